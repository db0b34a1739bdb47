ALTER TABLE attempts DROP COLUMN log_incomplete;
