ALTER TABLE work_requests DROP COLUMN retries_left, DROP COLUMN retry_backoff_ms,
    DROP COLUMN not_before, DROP COLUMN name, DROP COLUMN kind;
