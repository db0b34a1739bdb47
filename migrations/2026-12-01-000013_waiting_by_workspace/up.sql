-- `max_pending` counts a workspace's waiting requests (pending and blocked) at every
-- submission to a limited workspace; pending ones are found through
-- work_requests_queue_by_workspace, blocked ones through this.
CREATE INDEX work_requests_blocked_by_workspace
    ON work_requests (workspace_id)
    WHERE status = 'blocked';
