-- Topics and durable subscriptions (see core/src/topics): publish/subscribe inside a
-- workspace, with acknowledged delivery, store policies, retention, availability by
-- ping/pong and response topics.
--
-- A topic's `slug` is unique in its workspace; slugs starting `berth.` are the system
-- topics that carry Berth's own events (`is_system`; only the server publishes on them).
-- `is_public`: any member of the workspace may publish and consume; otherwise producers
-- and consumers are granted in `topic_grants` (owners of the workspace and admins may
-- always). `store_policy` says when a message row is deleted: `disabled` never stored
-- (live consumers only), `cache` at the first ack by any subscription, `cacheall` once
-- every subscription that existed when it was published has acked it, `store` only by
-- retention (`max_age_ms`, `max_messages`; NULL = no limit). `garbage_collect_at`: the
-- topic and all it holds are dropped then (response topics). `response_for` is the topic
-- a response topic answers; `owner_id` who may consume a response topic.
-- `last_ping_at` / `last_pong_at` are the evidence of availability.
CREATE TABLE topics (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id),
    slug                text NOT NULL,
    description         text NOT NULL DEFAULT '',
    is_public           boolean NOT NULL DEFAULT false,
    is_system           boolean NOT NULL DEFAULT false,
    store_policy        text NOT NULL CHECK (store_policy IN ('disabled', 'cache', 'cacheall', 'store')),
    max_age_ms          bigint CHECK (max_age_ms > 0),
    max_messages        bigint CHECK (max_messages > 0),
    api_info            jsonb NOT NULL DEFAULT '{}',
    garbage_collect_at  timestamptz,
    response_for        uuid REFERENCES topics (id) ON DELETE CASCADE,
    owner_id            uuid REFERENCES users (id),
    created_by          uuid REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_ping_at        timestamptz,
    last_pong_at        timestamptz
);
CREATE UNIQUE INDEX topics_slug ON topics (workspace_id, slug);
CREATE INDEX topics_collect ON topics (garbage_collect_at) WHERE garbage_collect_at IS NOT NULL;

-- Who may produce on or consume from a topic that is not public: a user
-- (`user:<uuid>`) or everyone holding a workspace role at least (`role:viewer`,
-- `role:contributor`, `role:owner`).
CREATE TABLE topic_grants (
    topic_id     uuid NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    principal    text NOT NULL,
    can_produce  boolean NOT NULL DEFAULT false,
    can_consume  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (topic_id, principal)
);

-- One sequence for every topic: a message's `seq` grows within its topic (not densely).
CREATE SEQUENCE topic_message_seq;

-- Stored messages. `message_id` is the publisher's id (or one the server chose);
-- `context` and `properties` (e.g. `response_topic`) travel with the content.
CREATE TABLE topic_messages (
    topic_id      uuid NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    seq           bigint NOT NULL DEFAULT nextval('topic_message_seq'),
    message_id    uuid NOT NULL,
    context       text NOT NULL DEFAULT '',
    content       jsonb NOT NULL,
    properties    jsonb NOT NULL DEFAULT '{}',
    producer_id   uuid,
    producer      text NOT NULL DEFAULT '',
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic_id, seq)
);
CREATE INDEX topic_messages_time ON topic_messages (topic_id, published_at);

-- Every message id published on a topic, kept after its message is deleted (by a store
-- policy or retention) so a second publish of the same id is refused: ALREADY_EXISTS,
-- and nothing new is stored. Pruned after the dedupe window.
CREATE TABLE topic_message_ids (
    topic_id      uuid NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    message_id    uuid NOT NULL,
    seq           bigint NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic_id, message_id)
);
CREATE INDEX topic_message_ids_time ON topic_message_ids (published_at);

-- Durable named subscriptions. `internal` ones belong to the server (a topic trigger
-- rule's, named after it). `backoff_ms[n]` is the wait before delivery n+2 (the last
-- repeats); `max_deliveries` 0 = unlimited; a message delivered that many times without
-- an ack goes to `dead_letter_topic_id` (or is dropped with an event when there is none).
CREATE TABLE subscriptions (
    id                    uuid PRIMARY KEY,
    topic_id              uuid NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    name                  text NOT NULL,
    internal              boolean NOT NULL DEFAULT false,
    ack_deadline_ms       integer NOT NULL DEFAULT 30000 CHECK (ack_deadline_ms > 0),
    max_deliveries        integer NOT NULL DEFAULT 5 CHECK (max_deliveries >= 0),
    backoff_ms            integer[] NOT NULL DEFAULT '{1000,5000,30000}',
    max_in_flight         integer NOT NULL DEFAULT 1000 CHECK (max_in_flight > 0),
    dead_letter_topic_id  uuid REFERENCES topics (id) ON DELETE SET NULL,
    created_by            uuid REFERENCES users (id),
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX subscriptions_name ON subscriptions (topic_id, name);

-- What a subscription still owes: one row per (subscription, message) not yet acked;
-- the ack deletes it. `delivery_count` is how many times it was handed out and, with the
-- subscription and seq, fences a delivery: an ack naming an older count, or arriving
-- after `leased_until`, is answered `expired`. `visible_at` is when it may be handed out
-- (again); `consumer_id` the live consumer holding it.
--
-- A lease sets `visible_at` to `leased_until`, so a lease that runs out makes its row
-- visible again without anything being written; a release sets `visible_at` to the end
-- of its backoff and clears the lease. The row goes with its message (retention, `cache`):
-- the foreign key cascades.
CREATE TABLE subscription_messages (
    subscription_id  uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    topic_id         uuid NOT NULL,
    visible_at       timestamptz NOT NULL DEFAULT now(),
    delivery_count   integer NOT NULL DEFAULT 0,
    leased_until     timestamptz,
    consumer_id      uuid,
    PRIMARY KEY (subscription_id, seq),
    FOREIGN KEY (topic_id, seq) REFERENCES topic_messages (topic_id, seq) ON DELETE CASCADE
);
CREATE INDEX subscription_messages_ready ON subscription_messages (subscription_id, visible_at, seq);
CREATE INDEX subscription_messages_message ON subscription_messages (topic_id, seq);
-- Leases, for the pass that dead-letters rows whose last lease ran out on their last
-- delivery while no consumer came to claim them.
CREATE INDEX subscription_messages_leased ON subscription_messages (leased_until) WHERE leased_until IS NOT NULL;

-- Consumers connected now (one row per open Subscribe stream, on any replica), so a
-- `disabled` topic's message reaches exactly one of a subscription's live consumers and
-- a ping reaches them all. A replica removes its rows when a stream ends and all of them
-- when it starts; rows whose `seen_at` is older than the liveness window are ignored.
CREATE TABLE topic_consumers (
    id               uuid PRIMARY KEY,
    subscription_id  uuid NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    topic_id         uuid NOT NULL,
    replica_id       uuid NOT NULL,
    user_id          uuid,
    connected_at     timestamptz NOT NULL DEFAULT now(),
    seen_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX topic_consumers_topic ON topic_consumers (topic_id);
CREATE INDEX topic_consumers_replica ON topic_consumers (replica_id);
CREATE INDEX topic_consumers_subscription ON topic_consumers (subscription_id);
