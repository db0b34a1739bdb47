-- Execution: what workers report about attempts, and per-stream log accounting.

-- Logical end offset of each log stream of an attempt (bytes acknowledged to the worker,
-- including any dropped past the log cap), and how the attempt ended.
ALTER TABLE attempts
    ADD COLUMN stdout_bytes  bigint NOT NULL DEFAULT 0,
    ADD COLUMN stderr_bytes  bigint NOT NULL DEFAULT 0,
    ADD COLUMN system_bytes  bigint NOT NULL DEFAULT 0,
    ADD COLUMN outcome       text,
    ADD COLUMN message       text NOT NULL DEFAULT '',
    ADD COLUMN run_ms        bigint;

-- Bytes of log stored for the request across attempts (against the log cap), whether the
-- cap was reached, and the message that explains the result (e.g. Docker's pull error).
ALTER TABLE work_requests
    ADD COLUMN log_bytes      bigint NOT NULL DEFAULT 0,
    ADD COLUMN log_truncated  boolean NOT NULL DEFAULT false,
    ADD COLUMN message        text NOT NULL DEFAULT '';

-- Stream 4 holds the server's own notes (such as the truncation marker), so they never
-- take offsets in the streams the worker writes.
ALTER TABLE log_chunks DROP CONSTRAINT log_chunks_stream_check;
ALTER TABLE log_chunks ADD CONSTRAINT log_chunks_stream_check CHECK (stream IN (1, 2, 3, 4));

-- Production order across the streams of a request, for followers.
ALTER TABLE log_chunks ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX log_chunks_by_seq ON log_chunks (work_request_id, seq);
