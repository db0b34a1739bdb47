-- The W3C trace context a work request was submitted in (`00-<trace>-<span>-<flags>`),
-- kept only when the server exports traces: the scheduler and the worker continue that
-- trace, so one trace runs from the submit call through the queue to the container's
-- exit. NULL when traces are off. It names a trace, nothing secret.
ALTER TABLE work_requests ADD COLUMN traceparent text
    CHECK (traceparent IS NULL OR length(traceparent) <= 128);
