DROP INDEX log_chunks_by_seq;
ALTER TABLE log_chunks DROP COLUMN seq;
DELETE FROM log_chunks WHERE stream = 4;
ALTER TABLE log_chunks DROP CONSTRAINT log_chunks_stream_check;
ALTER TABLE log_chunks ADD CONSTRAINT log_chunks_stream_check CHECK (stream IN (1, 2, 3));
ALTER TABLE work_requests DROP COLUMN log_bytes, DROP COLUMN log_truncated, DROP COLUMN message;
ALTER TABLE attempts DROP COLUMN stdout_bytes, DROP COLUMN stderr_bytes, DROP COLUMN system_bytes,
    DROP COLUMN outcome, DROP COLUMN message, DROP COLUMN run_ms;
