-- Trigger rules and their events (see core/src/triggers): rules that make work when a
-- time comes (`schedule`), an artifact is completed (`artifact`), a request ends
-- (`completion`) or a message is published (`topic`), and every firing, skip, miss,
-- pause-suppressed time and error as an event with its reason.
--
-- `config` is the rule's type's configuration, as its handler checked and normalized it;
-- `action` what a firing runs: a template (by id, with the release policy: `version`
-- NULL for the latest at each firing, or pinned) with overrides or parameters. Secret
-- override values are sealed in `action_secrets`, never in `action`.
-- `pause_note` is why a paused rule was paused. `next_fire_at` is a schedule rule's next nominal time (NULL for event rules and once
-- archived); `buffered_at` a nominal time held back by the `buffer-one` overlap policy
-- until the previous run ends; `watch_from` where an event rule's scan of new artifacts or
-- ended requests starts. Archiving is one-way and frees the name.
CREATE TABLE trigger_rules (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces (id),
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('schedule', 'artifact', 'completion', 'topic')),
    config          jsonb NOT NULL,
    template_id     uuid NOT NULL REFERENCES templates (id),
    action          jsonb NOT NULL,
    action_secrets  bytea,
    active          boolean NOT NULL DEFAULT true,
    pause_note      text NOT NULL DEFAULT '',
    archived_at     timestamptz,
    created_by      uuid NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    modified_at     timestamptz NOT NULL DEFAULT now(),
    last_fired_at   timestamptz,
    next_fire_at    timestamptz,
    buffered_at     timestamptz,
    watch_from      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX trigger_rules_name ON trigger_rules (workspace_id, name) WHERE archived_at IS NULL;
CREATE INDEX trigger_rules_due ON trigger_rules (next_fire_at)
    WHERE archived_at IS NULL AND next_fire_at IS NOT NULL;
CREATE INDEX trigger_rules_buffered ON trigger_rules (buffered_at)
    WHERE archived_at IS NULL AND buffered_at IS NOT NULL;
CREATE INDEX trigger_rules_watching ON trigger_rules (workspace_id, kind)
    WHERE archived_at IS NULL AND kind IN ('artifact', 'completion');

-- One event per firing, skip, miss, pause-suppressed time or error. `rule_id` is NULL for
-- an event from outside any rule. `dedupe` is what makes a rule fire once: its nominal
-- time (`at:` RFC 3339 in UTC), the artifact (`artifact:ID`) or the ended request
-- (`request:ID`) that caused it, or the event's own id for a manual firing; the unique
-- index on (rule_id, dedupe) decides across replicas which firing makes the work.
-- An event that makes work is stored `pending` with the id its request will have
-- (`work_request_id`, reserved), and settled `fired` once that request exists (or
-- `error` with the reason it could not be made); a retried settle finds the request by
-- that id, so it can never make a second one. `run_as` is the user the request is made
-- for (the rule's creator, or who fired it by hand).
CREATE TABLE trigger_events (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    rule_id          uuid REFERENCES trigger_rules (id),
    kind             text NOT NULL,
    outcome          text NOT NULL CHECK (outcome IN
        ('pending', 'fired', 'skipped', 'missed', 'paused', 'buffered', 'error')),
    reason           text NOT NULL DEFAULT '',
    nominal_at       timestamptz,
    dedupe           text NOT NULL,
    description      jsonb NOT NULL DEFAULT '{}',
    run_as           uuid REFERENCES users (id),
    work_request_id  uuid,
    occurred_at      timestamptz NOT NULL DEFAULT now(),
    settled_at       timestamptz
);
CREATE UNIQUE INDEX trigger_events_once ON trigger_events (rule_id, dedupe) WHERE rule_id IS NOT NULL;
CREATE UNIQUE INDEX trigger_events_request ON trigger_events (work_request_id)
    WHERE work_request_id IS NOT NULL;
CREATE INDEX trigger_events_by_rule ON trigger_events (rule_id, occurred_at DESC, id);
CREATE INDEX trigger_events_by_workspace ON trigger_events (workspace_id, occurred_at DESC, id);
CREATE INDEX trigger_events_pending ON trigger_events (occurred_at) WHERE outcome = 'pending';

-- The last time any replica passed over the schedule rules. A pass that finds it older
-- than the outage threshold knows no replica was running since: the nominal times in
-- between were missed, and the catch-up window decides which still fire.
CREATE TABLE trigger_clock (
    id            integer PRIMARY KEY CHECK (id = 1),
    last_pass_at  timestamptz NOT NULL
);

-- Event rules scan these.
CREATE INDEX artifacts_completed ON artifacts (workspace_id, category, completed_at)
    WHERE complete;
CREATE INDEX work_requests_completed ON work_requests (workspace_id, completed_at)
    WHERE completed_at IS NOT NULL;
