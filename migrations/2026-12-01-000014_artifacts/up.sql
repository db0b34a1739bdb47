-- Artifacts and the file store (see core/src/artifacts). The first schema's `files`,
-- `artifacts` and `artifact_files` were placeholders that nothing wrote; they are replaced.
DROP TABLE artifact_files;
DROP TABLE artifacts;
DROP TABLE files;

-- The stores the server is configured with, by name (the server's config also says which
-- store each workspace writes to). The server upserts its configured stores at start;
-- rows outlive a store's removal from the config so files in it stay accounted for. `total_size` is the bytes of the files it holds, kept in the same
-- transaction as `file_in_store`, and checked against `max_size`.
CREATE TABLE file_stores (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    backend     text NOT NULL CHECK (backend IN ('local', 's3', 'memory')),
    max_size    bigint CHECK (max_size IS NULL OR max_size >= 0),
    total_size  bigint NOT NULL DEFAULT 0 CHECK (total_size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A file is its SHA-256 and its size together. The empty file always exists.
CREATE TABLE files (
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    size        bigint NOT NULL CHECK (size >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha256, size)
);
INSERT INTO files (sha256, size)
VALUES ('\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 0);

-- Which store holds which file. `deleting` is set before the bytes are deleted and the row
-- goes after, so a crash in between leaves an orphan object (swept later), never a row
-- that names missing bytes. `unreferenced_since` is when the last live artifact file
-- naming it went away (NULL while one exists); the collector waits a grace period from it.
CREATE TABLE file_in_store (
    store_id            uuid NOT NULL REFERENCES file_stores (id),
    sha256              bytea NOT NULL,
    size                bigint NOT NULL,
    stored_at           timestamptz NOT NULL DEFAULT now(),
    unreferenced_since  timestamptz,
    deleting            boolean NOT NULL DEFAULT false,
    PRIMARY KEY (store_id, sha256, size),
    FOREIGN KEY (sha256, size) REFERENCES files (sha256, size)
);
CREATE INDEX file_in_store_unreferenced ON file_in_store (unreferenced_since)
    WHERE unreferenced_since IS NOT NULL;
CREATE INDEX file_in_store_by_file ON file_in_store (sha256, size);

-- An artifact: files under relative paths plus JSON data, in one workspace, made by a user
-- or by a work request's attempt. `complete` once every file is uploaded. `expires_at`
-- NULL means never; an expired artifact is hidden at once unless something keeps it (a
-- collection's retention, or being the input of an unfinished request).
CREATE TABLE artifacts (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id),
    store_id            uuid NOT NULL REFERENCES file_stores (id),
    category            text NOT NULL,
    data                jsonb NOT NULL DEFAULT '{}',
    created_by          uuid REFERENCES users (id),
    work_request_id     uuid REFERENCES work_requests (id) ON DELETE SET NULL,
    attempt             integer,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    complete            boolean NOT NULL DEFAULT false,
    completed_at        timestamptz,
    total_size          bigint NOT NULL DEFAULT 0,
    file_count          integer NOT NULL DEFAULT 0,
    CHECK (created_by IS NOT NULL OR work_request_id IS NOT NULL OR attempt IS NULL)
);
CREATE INDEX artifacts_by_workspace ON artifacts (workspace_id, created_at DESC, id);
CREATE INDEX artifacts_by_category ON artifacts (workspace_id, category, created_at DESC);
CREATE INDEX artifacts_by_work_request ON artifacts (work_request_id) WHERE work_request_id IS NOT NULL;
CREATE INDEX artifacts_expiring ON artifacts (expires_at) WHERE expires_at IS NOT NULL;

-- The files of an artifact by path. A regular file names its file; a symlink (recorded
-- from a job's outputs, never followed) has a target and no file. `uploaded` once the
-- store holds its bytes.
CREATE TABLE artifact_files (
    artifact_id  uuid NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    path         text NOT NULL CHECK (path <> '' AND path NOT LIKE '/%'),
    sha256       bytea,
    size         bigint,
    mode         integer NOT NULL DEFAULT 420 CHECK (mode >= 0 AND mode <= 4095),
    symlink      text,
    uploaded     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (artifact_id, path),
    FOREIGN KEY (sha256, size) REFERENCES files (sha256, size),
    CHECK ((sha256 IS NULL) = (size IS NULL)),
    CHECK ((sha256 IS NULL) <> (symlink IS NULL))
);
CREATE INDEX artifact_files_by_file ON artifact_files (sha256, size);

-- A resumable upload of one file of an artifact. The committed size and the SHA-256
-- midstate after it are written at every part, so any replica can go on from there after
-- a restart. The staged bytes live in the store: `multipart_id` and `parts` (the
-- backend's references, in order) say where.
CREATE TABLE file_uploads (
    artifact_id     uuid NOT NULL,
    path            text NOT NULL,
    store_id        uuid NOT NULL REFERENCES file_stores (id),
    staging_key     text NOT NULL UNIQUE,
    multipart_id    text NOT NULL DEFAULT '',
    committed_size  bigint NOT NULL DEFAULT 0 CHECK (committed_size >= 0),
    hash_state      bytea,
    parts           text[] NOT NULL DEFAULT '{}',
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (artifact_id, path),
    FOREIGN KEY (artifact_id, path) REFERENCES artifact_files (artifact_id, path) ON DELETE CASCADE
);
CREATE INDEX file_uploads_stale ON file_uploads (updated_at);

-- Typed links between artifacts of one workspace.
CREATE TABLE artifact_relations (
    from_id     uuid NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    to_id       uuid NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('extends', 'relates-to', 'built-using')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (from_id, to_id, kind),
    CHECK (from_id <> to_id)
);
CREATE INDEX artifact_relations_to ON artifact_relations (to_id);

-- A named set of artifacts with a retention policy: keep the last `keep_last` items
-- and/or those younger than `keep_seconds`; pinned items are always kept. Removed items
-- stay as history with their artifacts for `history_seconds`, then as metadata only for
-- `metadata_seconds`, then go.
CREATE TABLE collections (
    id                uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL REFERENCES workspaces (id),
    name              text NOT NULL,
    category          text NOT NULL,
    keep_last         integer CHECK (keep_last IS NULL OR keep_last >= 1),
    keep_seconds      bigint CHECK (keep_seconds IS NULL OR keep_seconds >= 1),
    history_seconds   bigint NOT NULL DEFAULT 2592000 CHECK (history_seconds >= 0),
    metadata_seconds  bigint NOT NULL DEFAULT 31536000 CHECK (metadata_seconds >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

-- The items of a collection. An item name is unique among active (not removed) items.
-- `artifact_id` goes NULL when a removed item's artifact is collected; `category` and
-- `data` are copied from the artifact so the history still reads then.
CREATE TABLE collection_items (
    id             uuid PRIMARY KEY,
    collection_id  uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    name           text NOT NULL,
    artifact_id    uuid REFERENCES artifacts (id) ON DELETE SET NULL,
    category       text NOT NULL,
    data           jsonb NOT NULL DEFAULT '{}',
    pinned         boolean NOT NULL DEFAULT false,
    added_by       uuid REFERENCES users (id),
    added_at       timestamptz NOT NULL DEFAULT now(),
    removed_at     timestamptz,
    removed_why    text
);
CREATE UNIQUE INDEX collection_items_active_name ON collection_items (collection_id, name)
    WHERE removed_at IS NULL;
CREATE INDEX collection_items_by_artifact ON collection_items (artifact_id)
    WHERE artifact_id IS NOT NULL;
CREATE INDEX collection_items_removed ON collection_items (removed_at)
    WHERE removed_at IS NOT NULL;

-- The inputs of a work request, mounted read-only at `mount` (relative to /in). Pinned to
-- an artifact at submission; an input taken from a step the request needs names that
-- step (`from_work_request_id`) and is pinned to its output when it finishes.
CREATE TABLE work_request_inputs (
    work_request_id       uuid NOT NULL REFERENCES work_requests (id) ON DELETE CASCADE,
    mount                 text NOT NULL,
    artifact_id           uuid REFERENCES artifacts (id),
    from_work_request_id  uuid REFERENCES work_requests (id),
    PRIMARY KEY (work_request_id, mount),
    CHECK (artifact_id IS NOT NULL OR from_work_request_id IS NOT NULL)
);
CREATE INDEX work_request_inputs_by_artifact ON work_request_inputs (artifact_id);

-- The artifact an attempt's outputs were collected into.
ALTER TABLE attempts ADD COLUMN output_artifact_id uuid REFERENCES artifacts (id) ON DELETE SET NULL;
