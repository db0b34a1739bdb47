-- The queue tables churn: every work request is inserted, updated a few times and
-- finished within seconds, so dead row versions pile up in the pending-queue index and
-- the planner's row estimates go stale quickly. Vacuum and analyze them after 2 % of
-- their rows changed instead of PostgreSQL's default 20 % / 10 %.
ALTER TABLE work_requests SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE attempts SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- The scheduler's sweep looks for assignments not accepted in time every second; without
-- this index that is a scan of every attempt ever made.
CREATE INDEX attempts_unaccepted ON attempts (assigned_at) WHERE state = 'assigned';
