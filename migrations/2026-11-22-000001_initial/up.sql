-- Berth's initial schema. Enumerations are text with CHECK constraints so that psql
-- users read them plainly and diesel maps them without custom SQL types.

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a token is stored; the secret is shown once at creation.
CREATE TABLE tokens (
    id            uuid PRIMARY KEY,
    hash          bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    role          text NOT NULL CHECK (role IN ('admin', 'user', 'worker')),
    -- Admin and user tokens belong to a user; worker tokens have none.
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    -- For worker tokens: the name the worker registers as ('' lets it choose).
    worker_name   text NOT NULL DEFAULT '',
    comment       text NOT NULL DEFAULT '',
    enabled       boolean NOT NULL DEFAULT true,
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    CHECK ((role = 'worker') = (user_id IS NULL))
);

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO workspaces (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'default');

-- A build host's daemon. Bound to the worker token it first connected with.
CREATE TABLE workers (
    id                 uuid PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    token_id           uuid UNIQUE REFERENCES tokens (id) ON DELETE SET NULL,
    labels             jsonb NOT NULL DEFAULT '{}',
    metadata           jsonb NOT NULL DEFAULT '{}',
    concurrency        integer NOT NULL DEFAULT 1 CHECK (concurrency >= 1),
    enabled            boolean NOT NULL DEFAULT true,
    draining           boolean NOT NULL DEFAULT false,
    -- Set while a stream is open (on some server replica); NULL when disconnected.
    connected_at       timestamptz,
    last_heartbeat_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE work_requests (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces (id),
    status               text NOT NULL
                         CHECK (status IN ('blocked', 'pending', 'running', 'completed', 'aborted')),
    result               text CHECK (result IN ('success', 'failure', 'error')),
    -- Validated container spec with defaults filled in, without secret values.
    spec                 jsonb NOT NULL,
    -- Secret env values, encrypted with the server's secret key (nonce || ciphertext).
    secret_env           bytea,
    secret_env_keys      text[] NOT NULL DEFAULT '{}',
    requirements         jsonb NOT NULL DEFAULT '{}',
    priority_base        integer NOT NULL DEFAULT 0,
    priority_adjustment  integer NOT NULL DEFAULT 0,
    created_by           uuid NOT NULL REFERENCES users (id),
    created_at           timestamptz NOT NULL DEFAULT now(),
    started_at           timestamptz,
    completed_at         timestamptz,
    exit_code            integer,
    reason               text NOT NULL DEFAULT '',
    -- Workflows: the parent request whose status follows its children.
    parent_id            uuid REFERENCES work_requests (id),
    -- How a blocked request becomes pending: when its dependencies are done, or by hand.
    unblock_strategy     text NOT NULL DEFAULT 'deps' CHECK (unblock_strategy IN ('deps', 'manual')),
    -- Dependants of a failed request run anyway when it was submitted with this set.
    allow_failure        boolean NOT NULL DEFAULT false,
    -- How many more attempts a worker loss may cost before the request ends in error.
    retry_budget         integer NOT NULL DEFAULT 2,
    attempt_count        integer NOT NULL DEFAULT 0,
    CHECK ((status IN ('completed')) = (result IS NOT NULL))
);
-- The pending queue: effective priority, then age.
CREATE INDEX work_requests_queue
    ON work_requests ((priority_base + priority_adjustment) DESC, created_at, id)
    WHERE status = 'pending';
-- Listing, newest first.
CREATE INDEX work_requests_created ON work_requests (created_at DESC, id DESC);
CREATE INDEX work_requests_parent ON work_requests (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE work_request_dependencies (
    work_request_id  uuid NOT NULL REFERENCES work_requests (id) ON DELETE CASCADE,
    depends_on_id    uuid NOT NULL REFERENCES work_requests (id) ON DELETE CASCADE,
    PRIMARY KEY (work_request_id, depends_on_id),
    CHECK (work_request_id <> depends_on_id)
);
CREATE INDEX work_request_dependencies_reverse ON work_request_dependencies (depends_on_id);

-- One try of a work request on one worker; `number` is the fencing token.
CREATE TABLE attempts (
    work_request_id    uuid NOT NULL REFERENCES work_requests (id) ON DELETE CASCADE,
    number             integer NOT NULL CHECK (number >= 1),
    worker_id          uuid REFERENCES workers (id) ON DELETE SET NULL,
    worker_name        text NOT NULL,
    state              text NOT NULL
                       CHECK (state IN ('assigned', 'accepted', 'running', 'finished')),
    container_id       text NOT NULL DEFAULT '',
    exit_code          integer,
    reason             text NOT NULL DEFAULT '',
    assigned_at        timestamptz NOT NULL DEFAULT now(),
    accepted_at        timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    peak_memory_bytes  bigint,
    cpu_time_ns        bigint,
    pull_ms            bigint,
    PRIMARY KEY (work_request_id, number)
);
CREATE INDEX attempts_live_by_worker ON attempts (worker_id) WHERE state <> 'finished';

-- Logs: ordered byte chunks per attempt and stream, addressed by byte offset.
CREATE TABLE log_chunks (
    work_request_id  uuid NOT NULL,
    attempt          integer NOT NULL,
    stream           smallint NOT NULL CHECK (stream IN (1, 2, 3)), -- stdout, stderr, system
    byte_offset      bigint NOT NULL CHECK (byte_offset >= 0),
    data             bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (work_request_id, attempt, stream, byte_offset),
    FOREIGN KEY (work_request_id, attempt) REFERENCES attempts (work_request_id, number) ON DELETE CASCADE
);

-- Content-addressed file blobs and the artifacts that group them.
CREATE TABLE files (
    sha256      bytea PRIMARY KEY CHECK (length(sha256) = 32),
    size        bigint NOT NULL CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE artifacts (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    category         text NOT NULL,
    data             jsonb NOT NULL DEFAULT '{}',
    work_request_id  uuid REFERENCES work_requests (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz
);

CREATE TABLE artifact_files (
    artifact_id  uuid NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    path         text NOT NULL CHECK (path <> '' AND path NOT LIKE '/%'),
    sha256       bytea NOT NULL REFERENCES files (sha256),
    PRIMARY KEY (artifact_id, path)
);
