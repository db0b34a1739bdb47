-- Tenancy: users who can be disabled, workspaces with settings and limits, members with
-- roles, and workers that serve only some workspaces.

ALTER TABLE users
    ADD COLUMN admin    boolean NOT NULL DEFAULT false,
    ADD COLUMN enabled  boolean NOT NULL DEFAULT true;
-- Whoever holds an admin token today is an admin user.
UPDATE users SET admin = true WHERE id IN (SELECT user_id FROM tokens WHERE role = 'admin');

ALTER TABLE workspaces
    -- Readable by every user, not only by members.
    ADD COLUMN public                  boolean NOT NULL DEFAULT false,
    -- How long artifacts made in the workspace are kept unless they say otherwise.
    ADD COLUMN default_expiry_seconds  bigint CHECK (default_expiry_seconds > 0),
    -- Set once: nothing new may be submitted; history stays readable.
    ADD COLUMN archived_at             timestamptz,
    -- Admin-set limits (NULL: none) and the fair-share weight.
    ADD COLUMN max_running             integer CHECK (max_running >= 0),
    ADD COLUMN max_pending             integer CHECK (max_pending >= 0),
    ADD COLUMN weight                  integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000);

CREATE TABLE workspace_members (
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('owner', 'contributor', 'viewer')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members (user_id);

-- Everybody who could submit to `default` before keeps doing so.
INSERT INTO workspace_members (workspace_id, user_id, role)
SELECT '00000000-0000-0000-0000-000000000001', id, 'contributor' FROM users WHERE NOT admin;

-- A worker restricted to workspaces takes only their requests; NULL serves them all.
ALTER TABLE workers ADD COLUMN workspaces uuid[];

-- Fair share walks each workspace's queue on its own and counts its running requests.
CREATE INDEX work_requests_queue_by_workspace
    ON work_requests (workspace_id, (priority_base + priority_adjustment) DESC, created_at, id)
    WHERE status = 'pending';
CREATE INDEX work_requests_running_by_workspace
    ON work_requests (workspace_id)
    WHERE status = 'running';
