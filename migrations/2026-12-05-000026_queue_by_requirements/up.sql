-- Each workspace's queue, split by requirement set. A claim reads only the sets the
-- worker can run (found with a skip scan over this index, one probe per set), so
-- pending requests no connected worker can take are never read: a backlog for another
-- pool costs a claim nothing. Replaces work_requests_queue_by_workspace, whose every
-- use has the workspace as the leading column here too.
CREATE INDEX work_requests_queue_by_requirements
    ON work_requests (workspace_id, requirements,
                      (priority_base + priority_adjustment) DESC, created_at, id)
    WHERE status = 'pending';
DROP INDEX work_requests_queue_by_workspace;
