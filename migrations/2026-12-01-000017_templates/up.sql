-- Templates (see core/src/templates): named, versioned specs of a workspace. `kind` says
-- what a release's spec holds: a job (a container spec with its scheduling fields) or a
-- workflow (steps with declared parameters). Names are unique per workspace and kind.
-- `latest_version` is the newest release's number; it is raised in the same transaction
-- that inserts the release, under this row's lock, so versions have no gaps and no
-- duplicates. An archived template keeps its releases (requests name them) but is not
-- listed by default and cannot be run or changed.
CREATE TABLE templates (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id),
    kind            text NOT NULL CHECK (kind IN ('job', 'workflow')),
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    active          boolean NOT NULL DEFAULT true,
    latest_version  integer NOT NULL CHECK (latest_version >= 1),
    created_by      uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    archived_at     timestamptz,
    UNIQUE (workspace_id, kind, name)
);

-- Release vN of a template: immutable once inserted. `spec` is the whole resolved spec
-- (never a delta); secret values are sealed apart in `secret_env` with the server's key,
-- and only their names are in `secret_env_keys`. `changes` is the structured difference
-- from the previous release and `summary` its human wording, both written by the server;
-- neither ever holds a secret value. `note` is what the author said about the change (may
-- be empty). `rolled_back_from` is the version a rollback restored.
CREATE TABLE template_releases (
    template_id       uuid NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version           integer NOT NULL CHECK (version >= 1),
    spec              jsonb NOT NULL,
    secret_env        bytea,
    secret_env_keys   text[] NOT NULL DEFAULT '{}',
    changes           jsonb NOT NULL DEFAULT '[]',
    summary           text NOT NULL,
    note              text NOT NULL DEFAULT '',
    rolled_back_from  integer,
    created_by        uuid NOT NULL REFERENCES users (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_id, version)
);

-- Which template release a request was made from (NULL for plain submissions). The
-- request still holds its whole spec: the release is a record of origin, never read to
-- run it, so later releases, rollbacks and archiving change nothing it runs.
ALTER TABLE work_requests
    ADD COLUMN template_id uuid REFERENCES templates (id),
    ADD COLUMN template_version integer,
    ADD CONSTRAINT work_requests_template_release
        CHECK ((template_id IS NULL) = (template_version IS NULL));
CREATE INDEX work_requests_by_template ON work_requests (template_id, created_at)
    WHERE template_id IS NOT NULL;
