ALTER TABLE work_requests DROP COLUMN traceparent;
