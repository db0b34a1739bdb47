-- Why an attempt's stored log misses output (the worker could not spool it, say); empty
-- when the log is complete.
ALTER TABLE attempts ADD COLUMN log_incomplete text NOT NULL DEFAULT '';
