DROP INDEX work_requests_running_by_workspace;
DROP INDEX work_requests_queue_by_workspace;
ALTER TABLE workers DROP COLUMN workspaces;
DROP TABLE workspace_members;
ALTER TABLE workspaces
    DROP COLUMN public, DROP COLUMN default_expiry_seconds, DROP COLUMN archived_at,
    DROP COLUMN max_running, DROP COLUMN max_pending, DROP COLUMN weight;
ALTER TABLE users DROP COLUMN admin, DROP COLUMN enabled;
