DROP INDEX log_chunks_by_seq;
ALTER TABLE log_chunks DROP COLUMN seq;
ALTER TABLE work_requests DROP COLUMN log_bytes, DROP COLUMN log_truncated, DROP COLUMN message;
ALTER TABLE attempts DROP COLUMN stdout_bytes, DROP COLUMN stderr_bytes, DROP COLUMN system_bytes,
    DROP COLUMN outcome, DROP COLUMN message, DROP COLUMN run_ms;
