DROP INDEX work_requests_completed;
DROP INDEX artifacts_completed;
DROP TABLE trigger_clock;
DROP TABLE trigger_events;
DROP TABLE trigger_rules;
