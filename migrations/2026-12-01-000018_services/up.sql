-- Services (see core/src/services): long-running containers from a job template's
-- release. Each replica is a slot (process type, index) whose container is a work request
-- of its own (`work_requests.service_id`); a restart is a new request for the slot, made
-- only once the previous one has ended, so a slot never has two live containers but
-- during a deploy, where `next_request_id` is the replacement being started.
--
-- `version` is the release the replicas run, or the target while a deploy is under way
-- (`deploy_state` 'rolling' or 'reverting'); `stable_version` the last one all replicas
-- were healthy on; `deploy_step_ms` is the deadline the deploy under way was given for
-- each step (NULL: the service's `deploy_deadline_ms`). `processes` maps a process type to {"replicas": N, "command": [...]}.
-- A deleted service keeps its row (its requests name it) with `deleted_at` set, which
-- frees its name.
CREATE TABLE services (
    id                  uuid PRIMARY KEY,
    workspace_id        uuid NOT NULL REFERENCES workspaces (id),
    name                text NOT NULL,
    template_id         uuid NOT NULL REFERENCES templates (id),
    version             integer NOT NULL CHECK (version >= 1),
    stable_version      integer,
    processes           jsonb NOT NULL,
    restart_policy      text NOT NULL CHECK (restart_policy IN ('always', 'on-failure', 'never')),
    backoff_initial_ms  bigint NOT NULL,
    backoff_max_ms      bigint NOT NULL,
    stable_after_ms     bigint NOT NULL,
    success_delay_ms    bigint NOT NULL,
    max_local_restarts  integer NOT NULL,
    min_healthy_ms      bigint NOT NULL,
    deploy_deadline_ms  bigint NOT NULL,
    ports               jsonb NOT NULL DEFAULT '[]',
    deploy_state        text NOT NULL DEFAULT ''
        CHECK (deploy_state IN ('', 'rolling', 'done', 'failed', 'reverting')),
    deploy_from         integer,
    deploy_auto_revert  boolean NOT NULL DEFAULT false,
    deploy_started_at   timestamptz,
    deploy_deadline_at  timestamptz,
    deploy_step_ms      bigint,
    deploy_message      text NOT NULL DEFAULT '',
    created_by          uuid NOT NULL REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE UNIQUE INDEX services_name ON services (workspace_id, name) WHERE deleted_at IS NULL;

-- One replica slot (`process`.`slot_index`, written `web.1`). `request_id` is its current container's request and `version` the
-- release it runs; `failures` counts failures in a row (the backoff's exponent) and
-- `local_failures` those on `last_worker_id` (past the service's `max_local_restarts` the
-- next container avoids that worker). `restart_at` is when a restarting slot may start
-- again; `healthy_since` when its current container became healthy. `exited` marks a slot
-- whose container ended and is not restarted under the restart policy.
CREATE TABLE service_slots (
    service_id       uuid NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    process          text NOT NULL,
    slot_index       integer NOT NULL CHECK (slot_index >= 0),
    request_id       uuid REFERENCES work_requests (id),
    version          integer NOT NULL,
    next_request_id  uuid REFERENCES work_requests (id),
    next_version     integer,
    failures         integer NOT NULL DEFAULT 0,
    local_failures   integer NOT NULL DEFAULT 0,
    last_worker_id   uuid REFERENCES workers (id),
    restart_at       timestamptz,
    healthy_since    timestamptz,
    exited           boolean NOT NULL DEFAULT false,
    PRIMARY KEY (service_id, process, slot_index)
);

-- What happened to a service and its replicas, with the reason: never updated.
CREATE TABLE service_events (
    id          bigserial PRIMARY KEY,
    service_id  uuid NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    process     text,
    slot_index  integer,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    version     integer,
    request_id  uuid,
    worker_id   uuid,
    exit_code   integer,
    by_user     uuid REFERENCES users (id),
    CHECK ((process IS NULL) = (slot_index IS NULL))
);
CREATE INDEX service_events_by_service ON service_events (service_id, id DESC);

-- Which service slot a request is a container of (one row per replica request; the
-- request itself is an ordinary job).
CREATE TABLE service_runs (
    request_id  uuid PRIMARY KEY REFERENCES work_requests (id) ON DELETE CASCADE,
    service_id  uuid NOT NULL REFERENCES services (id),
    process     text NOT NULL,
    slot_index  integer NOT NULL,
    version     integer NOT NULL
);
CREATE INDEX service_runs_by_slot ON service_runs (service_id, process, slot_index, request_id);

-- Where a pending request may run, besides its requirements: only on `pin_worker_id`, or
-- anywhere but `avoid_worker_id`. The claim honours both; a request without a row may
-- run on any worker its requirements admit.
CREATE TABLE request_placement (
    request_id       uuid PRIMARY KEY REFERENCES work_requests (id) ON DELETE CASCADE,
    pin_worker_id    uuid REFERENCES workers (id),
    avoid_worker_id  uuid REFERENCES workers (id),
    why              text NOT NULL DEFAULT '',
    CHECK (pin_worker_id IS NULL OR avoid_worker_id IS NULL)
);

-- What a replica's container reported: its HEALTHCHECK status (NULL: it has none, or
-- none reported yet; see `has_healthcheck`) and the ports Docker published, as bound.
ALTER TABLE attempts
    ADD COLUMN has_healthcheck boolean NOT NULL DEFAULT false,
    ADD COLUMN health text,
    ADD COLUMN health_output text NOT NULL DEFAULT '',
    ADD COLUMN health_at timestamptz,
    ADD COLUMN ports jsonb NOT NULL DEFAULT '[]';
