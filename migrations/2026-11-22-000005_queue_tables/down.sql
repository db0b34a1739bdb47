DROP INDEX attempts_unaccepted;
ALTER TABLE work_requests RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor);
ALTER TABLE attempts RESET (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor);
