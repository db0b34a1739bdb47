DROP INDEX attempts_awaiting_stop;
ALTER TABLE attempts DROP COLUMN stop_requested_at;
