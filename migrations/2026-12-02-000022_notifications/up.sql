-- Notifications (see core/src/notifications): channels of a workspace, reactions on its
-- objects, and the deliveries that carry Berth's own events to the channels at least
-- once, with the log of every attempt.
--
-- A channel is a `webhook` (url, extra header names, a signing secret and the header
-- values sealed with the server's key in `sealed`) or an `email` (recipients, subject
-- prefix; the SMTP relay is the server's). `event_types` are patterns (`work_request.*`)
-- of the events it wants whatever their object; empty: only what reactions point at.
-- `failures_in_row` counts deliveries that finally failed since the last success; at
-- the server's limit, or on a `410 Gone`, the channel is disabled with the reason.
CREATE TABLE notification_channels (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    name             text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('webhook', 'email')),
    url              text NOT NULL DEFAULT '',
    header_names     text[] NOT NULL DEFAULT '{}',
    sealed           bytea,
    recipients       text[] NOT NULL DEFAULT '{}',
    subject_prefix   text NOT NULL DEFAULT '',
    event_types      text[] NOT NULL DEFAULT '{}',
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text NOT NULL DEFAULT '',
    disabled_at      timestamptz,
    failures_in_row  integer NOT NULL DEFAULT 0,
    last_error       text NOT NULL DEFAULT '',
    created_by       uuid REFERENCES users (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    modified_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX notification_channels_name ON notification_channels (workspace_id, name);

-- When an object (a work request, a workflow, a template, a service) starts, succeeds,
-- fails or completes, notify a channel. An event of a request matches the reactions on
-- the request, its template, its workflow and its service.
CREATE TABLE notification_reactions (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id),
    object_kind   text NOT NULL CHECK (object_kind IN ('work_request', 'workflow', 'template', 'service')),
    object_id     uuid NOT NULL,
    on_event      text NOT NULL CHECK (on_event IN ('start', 'success', 'failure', 'completion')),
    channel_id    uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    created_by    uuid REFERENCES users (id),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX notification_reactions_unique ON notification_reactions (object_id, on_event, channel_id);
CREATE INDEX notification_reactions_workspace ON notification_reactions (workspace_id);

-- One delivery per (event, channel): the unique key makes queueing idempotent. `body`
-- is the exact JSON sent (the same bytes in every attempt). `series_attempts` counts the
-- attempts since the delivery was (re)queued, for the backoff; `attempts` all of them.
-- A replica claims a due delivery by setting `claim` and `leased_until` (FOR UPDATE
-- SKIP LOCKED); a claim whose replica died expires and any replica takes it again.
-- `test` deliveries (TestChannel) are tried once and never count as failures.
CREATE TABLE notification_deliveries (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    channel_id       uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL,
    event_type       text NOT NULL,
    object_id        uuid NOT NULL,
    body             text NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    test             boolean NOT NULL DEFAULT false,
    attempts         integer NOT NULL DEFAULT 0,
    series_attempts  integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claim            uuid,
    leased_until     timestamptz,
    last_error       text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE UNIQUE INDEX notification_deliveries_once ON notification_deliveries (event_id, channel_id);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, id);
CREATE INDEX notification_deliveries_finished ON notification_deliveries (finished_at) WHERE state <> 'pending';

-- Every attempt: when, the HTTP status (0: none) or the error, how long it took, the
-- first 4 KiB of the response, and the request headers as sent (no secret in them).
CREATE TABLE notification_attempts (
    delivery_id      uuid NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    number           integer NOT NULL,
    at               timestamptz NOT NULL DEFAULT now(),
    status_code      integer NOT NULL DEFAULT 0,
    error            text NOT NULL DEFAULT '',
    latency_ms       bigint NOT NULL DEFAULT 0,
    response         text NOT NULL DEFAULT '',
    request_headers  jsonb NOT NULL DEFAULT '{}',
    will_retry       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (delivery_id, number)
);
CREATE INDEX notification_attempts_at ON notification_attempts (at);
