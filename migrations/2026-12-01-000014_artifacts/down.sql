ALTER TABLE attempts DROP COLUMN output_artifact_id;
DROP TABLE work_request_inputs;
DROP TABLE collection_items;
DROP TABLE collections;
DROP TABLE artifact_relations;
DROP TABLE file_uploads;
DROP TABLE artifact_files;
DROP TABLE artifacts;
DROP TABLE file_in_store;
DROP TABLE files;
DROP TABLE file_stores;
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
