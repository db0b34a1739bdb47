-- Scheduling: automatic retries with backoff, and names for workflow parents and steps.
ALTER TABLE work_requests
    ADD COLUMN retries_left      integer NOT NULL DEFAULT 0 CHECK (retries_left >= 0),
    ADD COLUMN retry_backoff_ms  bigint NOT NULL DEFAULT 1000 CHECK (retry_backoff_ms >= 0),
    -- A pending request is not offered before this time (automatic retry backoff).
    ADD COLUMN not_before        timestamptz,
    ADD COLUMN name              text NOT NULL DEFAULT '';

-- A workflow parent is a request no worker runs: its status follows its steps.
ALTER TABLE work_requests
    ADD COLUMN kind text NOT NULL DEFAULT 'job' CHECK (kind IN ('job', 'workflow'));
