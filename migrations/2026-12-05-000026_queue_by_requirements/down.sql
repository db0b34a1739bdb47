CREATE INDEX work_requests_queue_by_workspace
    ON work_requests (workspace_id, (priority_base + priority_adjustment) DESC, created_at, id)
    WHERE status = 'pending';
DROP INDEX work_requests_queue_by_requirements;
