-- A lost worker's attempt whose container another worker on the same Docker engine was
-- asked to stop: the request is offered again only once that worker confirms the stop
-- (or the wait runs out), so two containers of one request never run at once. Set by the
-- lease sweep; every replica's sweep re-sends the stop to its own sessions until then.
ALTER TABLE attempts ADD COLUMN stop_requested_at timestamptz;
CREATE INDEX attempts_awaiting_stop ON attempts (stop_requested_at)
    WHERE stop_requested_at IS NOT NULL AND state <> 'finished';
