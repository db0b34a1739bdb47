-- Berth's own events (see core/src/events): every committed state change of work
-- requests, workflows, workers, artifacts, templates, services, trigger rules and their
-- firings is written to the outbox `system_events` by the triggers below, inside the
-- transaction that made the change, so no code path can forget one and none is written
-- for a change that rolls back. The relay (core/src/events/relay.rs) publishes them in
-- `seq` order on the system topics (`berth.work-requests`, …) and hands them to the
-- notification channels, and marks them relayed in the same transaction.
--
-- The triggers are constraint triggers, DEFERRABLE INITIALLY DEFERRED: each fires when
-- its transaction commits (still inside it), so the state it reports is read once the
-- transaction has written everything (an attempt's worker, a release's summary, the
-- service a replica belongs to), while the `WHEN` clause, evaluated at the change
-- itself, keeps out what is no state change: heartbeats, lease renewals, log offsets,
-- cursors and bookkeeping of the passes.
--
-- Order: `seq` is taken at commit, while the transaction still holds the row lock of the
-- changed object (an UPDATE or DELETE locks the row; an INSERT is invisible to others
-- until it commits). A second writer of the same object waits for that lock until the
-- first has committed, so it takes a larger `seq`: for one object, `seq` order is commit
-- order. (Across objects `seq` is only roughly commit order: a transaction may commit
-- after one that took a larger `seq`; the relay takes every row not yet relayed, so a
-- late one is published late, never lost.) Service events are of the service: their
-- writers hold the service's row lock (`services::store::lock`, the reconciler's claim).
--
-- Workspace: the object's own; workers belong to no workspace and report in `default`.
--
-- `data` is the object's new state built from an allow-list of columns per table (never
-- the whole row): no secret value, no sealed secret, no token is ever in it, and nothing
-- a viewer of the workspace could not read through the API.
CREATE TABLE system_events (
    seq          bigserial PRIMARY KEY,
    id           uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL,
    topic        text NOT NULL,
    event_type   text NOT NULL,
    object_id    uuid NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    data         jsonb NOT NULL,
    -- Set by the relay in the transaction that published the event; relayed rows are
    -- kept for the configured retention, then deleted.
    relayed_at   timestamptz,
    -- Set when the relay could not publish it (it is then marked relayed, so it never
    -- holds back the events after it): what went wrong.
    relay_error  text
);
CREATE INDEX system_events_unrelayed ON system_events (seq) WHERE relayed_at IS NULL;
CREATE INDEX system_events_relayed ON system_events (relayed_at) WHERE relayed_at IS NOT NULL;
CREATE INDEX system_events_object ON system_events (object_id, seq);

-- The one insert into the outbox, for the triggers below and for code that records an
-- event of its own (`events::emit`).
CREATE FUNCTION berth_emit(p_workspace uuid, p_topic text, p_type text, p_object uuid, p_data jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO system_events (workspace_id, topic, event_type, object_id, data)
    VALUES (p_workspace, p_topic, p_type, p_object, p_data)
$$;

-- Which trigger rules' firings led to a request (or the workflow it is a step of): the
-- rule whose firing made it, its event, and with them every rule before it in the chain
-- (`cause_rules` of that firing, for a topic rule fired by an event that was itself
-- caused by rules). NULL for a request no rule made. Topic rules use it to never fire on
-- what their own firings caused, however long the loop.
CREATE FUNCTION berth_cause(p_request uuid, p_parent uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'rule_id', e.rule_id,
        'event_id', e.id,
        'rules', coalesce(e.description -> 'cause_rules', '[]'::jsonb) || to_jsonb(e.rule_id::text))
    FROM trigger_events e
    WHERE e.rule_id IS NOT NULL
      AND e.work_request_id IS NOT NULL
      AND (e.work_request_id = p_request OR e.work_request_id = p_parent)
    ORDER BY e.work_request_id = p_request DESC
    LIMIT 1
$$;

-- ---------------------------------------------------------------------------------------
-- Work requests and workflows (a workflow is a work request of kind `workflow`; its
-- steps are jobs with `parent_id`). Topic `berth.work-requests` or `berth.workflows`;
-- types `work_request.*` / `workflow.*`: `created`, then one per status change —
-- `blocked`, `pending`, `running`, `succeeded`, `failed`, `errored` (completed with that
-- result), `cancelled` (aborted by a user), `aborted` (any other abort) — `updated` for
-- a priority change, `deleted`.

CREATE FUNCTION berth_work_request_state(r work_requests) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id,
        'kind', r.kind,
        'name', r.name,
        'status', r.status,
        'result', r.result,
        'reason', r.reason,
        'message', r.message,
        'exit_code', r.exit_code,
        'image', r.spec ->> 'image',
        'requirements', r.requirements,
        'priority', r.priority_base + r.priority_adjustment,
        'priority_base', r.priority_base,
        'priority_adjustment', r.priority_adjustment,
        'parent_id', r.parent_id,
        'template_id', r.template_id,
        'template_version', r.template_version,
        'template', (SELECT t.name FROM templates t WHERE t.id = r.template_id),
        'service_id', (SELECT s.service_id FROM service_runs s WHERE s.request_id = r.id),
        'attempt', r.attempt_count,
        'worker', (SELECT a.worker_name FROM attempts a
                   WHERE a.work_request_id = r.id AND a.number = r.attempt_count),
        'retries_left', r.retries_left,
        'not_before', r.not_before,
        'created_by', (SELECT u.name FROM users u WHERE u.id = r.created_by),
        'created_at', r.created_at,
        'started_at', r.started_at,
        'completed_at', r.completed_at,
        'trigger', berth_cause(r.id, r.parent_id))
$$;

-- The event word for a request's status (with its result and reason).
CREATE FUNCTION berth_request_word(p_status text, p_result text, p_reason text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_status = 'completed' AND p_result = 'success' THEN 'succeeded'
        WHEN p_status = 'completed' AND p_result = 'failure' THEN 'failed'
        WHEN p_status = 'completed' THEN 'errored'
        WHEN p_status = 'aborted' AND p_reason = 'cancelled' THEN 'cancelled'
        WHEN p_status = 'aborted' THEN 'aborted'
        ELSE p_status
    END
$$;

CREATE FUNCTION berth_events_work_request() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r work_requests;
    word text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
        word := 'deleted';
    ELSIF TG_OP = 'INSERT' THEN
        r := NEW;
        word := 'created';
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        r := NEW;
        word := berth_request_word(NEW.status, NEW.result, NEW.reason);
    ELSE
        r := NEW;
        word := 'updated';
    END IF;
    PERFORM berth_emit(
        r.workspace_id,
        CASE WHEN r.kind = 'workflow' THEN 'berth.workflows' ELSE 'berth.work-requests' END,
        CASE WHEN r.kind = 'workflow' THEN 'workflow.' ELSE 'work_request.' END || word,
        r.id,
        berth_work_request_state(r));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON work_requests
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_work_request();
CREATE CONSTRAINT TRIGGER system_events_update AFTER UPDATE ON work_requests
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.priority_adjustment IS DISTINCT FROM NEW.priority_adjustment)
    EXECUTE FUNCTION berth_events_work_request();
CREATE CONSTRAINT TRIGGER system_events_delete AFTER DELETE ON work_requests
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_work_request();

-- ---------------------------------------------------------------------------------------
-- Workers. Topic `berth.workers` of the `default` workspace; types `worker.connected`
-- (registered on its first Hello, or a new stream), `created` (registered unconnected), `disconnected`, `enabled` (also: a drain ended),
-- `disabled`, `draining`, `updated` (labels, facts, concurrency, workspaces), `deleted`.
-- Heartbeats and lease renewals change none of the columns watched.

CREATE FUNCTION berth_worker_state(w workers) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', w.id,
        'name', w.name,
        'labels', w.labels,
        'metadata', w.metadata,
        'concurrency', w.concurrency,
        'enabled', w.enabled,
        'draining', w.draining,
        'connected', w.connected_at IS NOT NULL,
        'connected_at', w.connected_at,
        'workspaces', (SELECT jsonb_agg(s.name ORDER BY s.name) FROM workspaces s
                       WHERE s.id = ANY (w.workspaces)),
        'created_at', w.created_at)
$$;

CREATE FUNCTION berth_events_worker() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    w workers;
    word text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        w := OLD;
        word := 'deleted';
    ELSIF TG_OP = 'INSERT' THEN
        w := NEW;
        word := CASE WHEN NEW.connected_at IS NULL THEN 'created' ELSE 'connected' END;
    ELSE
        w := NEW;
        IF NEW.connected_at IS DISTINCT FROM OLD.connected_at THEN
            word := CASE WHEN NEW.connected_at IS NULL THEN 'disconnected' ELSE 'connected' END;
        ELSIF NEW.enabled IS DISTINCT FROM OLD.enabled THEN
            word := CASE WHEN NEW.enabled THEN 'enabled' ELSE 'disabled' END;
        ELSIF NEW.draining IS DISTINCT FROM OLD.draining THEN
            word := CASE WHEN NEW.draining THEN 'draining' ELSE 'enabled' END;
        ELSE
            word := 'updated';
        END IF;
    END IF;
    PERFORM berth_emit(
        '00000000-0000-0000-0000-000000000001'::uuid,
        'berth.workers',
        'worker.' || word,
        w.id,
        berth_worker_state(w));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON workers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_worker();
CREATE CONSTRAINT TRIGGER system_events_update AFTER UPDATE ON workers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.connected_at IS DISTINCT FROM NEW.connected_at
          OR OLD.enabled IS DISTINCT FROM NEW.enabled
          OR OLD.draining IS DISTINCT FROM NEW.draining
          OR OLD.labels IS DISTINCT FROM NEW.labels
          OR OLD.metadata IS DISTINCT FROM NEW.metadata
          OR OLD.concurrency IS DISTINCT FROM NEW.concurrency
          OR OLD.workspaces IS DISTINCT FROM NEW.workspaces
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION berth_events_worker();
CREATE CONSTRAINT TRIGGER system_events_delete AFTER DELETE ON workers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_worker();

-- ---------------------------------------------------------------------------------------
-- Artifacts. Topic `berth.artifacts`; types `artifact.created`, `completed` (its last
-- file uploaded; an artifact complete when made gets `created` and then `completed`),
-- `updated` (its expiry moved to a future time or cleared), `deleted` (DeleteArtifact,
-- or an expiry set in the past: callers no longer see it), `collected` (the collector
-- removed its row).

CREATE FUNCTION berth_artifact_state(a artifacts) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id,
        'category', a.category,
        'data', a.data,
        'complete', a.complete,
        'file_count', a.file_count,
        'total_size', a.total_size,
        'work_request_id', a.work_request_id,
        'attempt', a.attempt,
        'created_by', (SELECT u.name FROM users u WHERE u.id = a.created_by),
        'created_at', a.created_at,
        'completed_at', a.completed_at,
        'expires_at', a.expires_at,
        'trigger', CASE WHEN a.work_request_id IS NULL THEN NULL ELSE
            berth_cause(a.work_request_id,
                        (SELECT r.parent_id FROM work_requests r WHERE r.id = a.work_request_id))
        END)
$$;

CREATE FUNCTION berth_events_artifact() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    a artifacts;
    word text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        a := OLD;
        word := 'collected';
    ELSIF TG_OP = 'INSERT' THEN
        a := NEW;
        PERFORM berth_emit(a.workspace_id, 'berth.artifacts', 'artifact.created', a.id,
                           berth_artifact_state(a));
        IF NOT NEW.complete THEN
            RETURN NULL;
        END IF;
        word := 'completed';
    ELSE
        a := NEW;
        IF NEW.complete AND NOT OLD.complete THEN
            word := 'completed';
        ELSIF NEW.expires_at IS NOT NULL AND NEW.expires_at <= now() THEN
            word := 'deleted';
        ELSE
            word := 'updated';
        END IF;
    END IF;
    PERFORM berth_emit(a.workspace_id, 'berth.artifacts', 'artifact.' || word, a.id,
                       berth_artifact_state(a));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON artifacts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_artifact();
CREATE CONSTRAINT TRIGGER system_events_update AFTER UPDATE ON artifacts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.complete IS DISTINCT FROM NEW.complete
          OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION berth_events_artifact();
CREATE CONSTRAINT TRIGGER system_events_delete AFTER DELETE ON artifacts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_artifact();

-- ---------------------------------------------------------------------------------------
-- Templates and their releases. Topic `berth.templates`; types `template.created` (with
-- its v1), `released` (v2 and later, rollbacks too: `latest_version` rose, under the
-- template's row lock), `archived`, `restored`, `updated` (description, active, name),
-- `deleted`.

CREATE FUNCTION berth_template_state(t templates) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id,
        'kind', t.kind,
        'name', t.name,
        'description', t.description,
        'active', t.active,
        'latest_version', t.latest_version,
        'archived_at', t.archived_at,
        'created_by', (SELECT u.name FROM users u WHERE u.id = t.created_by),
        'created_at', t.created_at,
        'updated_at', t.updated_at,
        'release', (SELECT jsonb_build_object(
                        'version', r.version,
                        'summary', r.summary,
                        'note', r.note,
                        'rolled_back_from', r.rolled_back_from,
                        'secret_env_keys', to_jsonb(r.secret_env_keys),
                        'created_by', (SELECT u.name FROM users u WHERE u.id = r.created_by),
                        'created_at', r.created_at)
                    FROM template_releases r
                    WHERE r.template_id = t.id AND r.version = t.latest_version))
$$;

CREATE FUNCTION berth_events_template() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t templates;
    word text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        t := OLD;
        word := 'deleted';
    ELSIF TG_OP = 'INSERT' THEN
        t := NEW;
        word := 'created';
    ELSE
        t := NEW;
        IF NEW.latest_version IS DISTINCT FROM OLD.latest_version THEN
            word := 'released';
        ELSIF NEW.archived_at IS DISTINCT FROM OLD.archived_at THEN
            word := CASE WHEN NEW.archived_at IS NULL THEN 'restored' ELSE 'archived' END;
        ELSE
            word := 'updated';
        END IF;
    END IF;
    PERFORM berth_emit(t.workspace_id, 'berth.templates', 'template.' || word, t.id,
                       berth_template_state(t));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON templates
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_template();
CREATE CONSTRAINT TRIGGER system_events_update AFTER UPDATE ON templates
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.latest_version IS DISTINCT FROM NEW.latest_version
          OR OLD.archived_at IS DISTINCT FROM NEW.archived_at
          OR OLD.description IS DISTINCT FROM NEW.description
          OR OLD.active IS DISTINCT FROM NEW.active
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION berth_events_template();
CREATE CONSTRAINT TRIGGER system_events_delete AFTER DELETE ON templates
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_template();

-- ---------------------------------------------------------------------------------------
-- Services. Every change of a service and its replicas is already a row of
-- `service_events` with a human reason, written in the transaction that made it under
-- the service's row lock; each becomes one event of topic `berth.services`, type
-- `service.<its kind>` with `-` as `_`: `created`, `started`, `healthy`, `exited`,
-- `restarting`, `moved`, `lost`, `stopping`, `scaled`, `updated`, `deploy_started`,
-- `deploy_step`, `deploy_done`, `deploy_failed`, `reverting`, `deleted`. The object is
-- the service; `data` holds the event and the service as its transaction left it.

CREATE FUNCTION berth_events_service() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s services;
BEGIN
    SELECT * INTO s FROM services WHERE id = NEW.service_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM berth_emit(
        s.workspace_id,
        'berth.services',
        'service.' || replace(NEW.kind, '-', '_'),
        s.id,
        jsonb_build_object(
            'id', s.id,
            'name', s.name,
            'event', jsonb_build_object(
                'kind', NEW.kind,
                'reason', NEW.reason,
                'replica', CASE WHEN NEW.process IS NULL THEN NULL
                                ELSE NEW.process || '.' || NEW.slot_index END,
                'version', NEW.version,
                'request_id', NEW.request_id,
                'worker', (SELECT w.name FROM workers w WHERE w.id = NEW.worker_id),
                'exit_code', NEW.exit_code,
                'by', (SELECT u.name FROM users u WHERE u.id = NEW.by_user),
                'at', NEW.at),
            'template_id', s.template_id,
            'template', (SELECT t.name FROM templates t WHERE t.id = s.template_id),
            'version', s.version,
            'stable_version', s.stable_version,
            'processes', s.processes,
            'deploy_state', s.deploy_state,
            'deploy_message', s.deploy_message,
            'created_by', (SELECT u.name FROM users u WHERE u.id = s.created_by),
            'created_at', s.created_at,
            'updated_at', s.updated_at,
            'deleted_at', s.deleted_at));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON service_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_service();

-- ---------------------------------------------------------------------------------------
-- Trigger rules and their firings. Topic `berth.triggers`. Rules: `trigger_rule.created`,
-- `updated` (configuration, action), `paused` (also a new pause note), `resumed`,
-- `archived`, `deleted`; the passes' bookkeeping (next time, cursor, last fired) is no
-- event. Firings: `trigger_event.<outcome>` when stored and when their outcome changes
-- (`pending`, `fired`, `skipped`, `missed`, `paused`, `buffered`, `error`); the object
-- is the firing, `data.rule_id` its rule. A rule's action shows its template and release
-- only (never override values, secret or not).

CREATE FUNCTION berth_trigger_rule_state(t trigger_rules) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id,
        'name', t.name,
        'kind', t.kind,
        'config', t.config,
        'template_id', t.template_id,
        'template', t.action ->> 'template',
        'version', t.action -> 'version',
        'active', t.active,
        'pause_note', t.pause_note,
        'archived_at', t.archived_at,
        'created_by', (SELECT u.name FROM users u WHERE u.id = t.created_by),
        'created_at', t.created_at,
        'modified_at', t.modified_at,
        'last_fired_at', t.last_fired_at,
        'next_fire_at', t.next_fire_at)
$$;

CREATE FUNCTION berth_events_trigger_rule() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t trigger_rules;
    word text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        t := OLD;
        word := 'deleted';
    ELSIF TG_OP = 'INSERT' THEN
        t := NEW;
        word := 'created';
    ELSE
        t := NEW;
        IF NEW.archived_at IS DISTINCT FROM OLD.archived_at THEN
            word := 'archived';
        ELSIF NEW.active AND NOT OLD.active THEN
            word := 'resumed';
        ELSIF NOT NEW.active AND (OLD.active OR NEW.pause_note IS DISTINCT FROM OLD.pause_note) THEN
            word := 'paused';
        ELSE
            word := 'updated';
        END IF;
    END IF;
    PERFORM berth_emit(t.workspace_id, 'berth.triggers', 'trigger_rule.' || word, t.id,
                       berth_trigger_rule_state(t));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON trigger_rules
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_trigger_rule();
CREATE CONSTRAINT TRIGGER system_events_update AFTER UPDATE ON trigger_rules
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.archived_at IS DISTINCT FROM NEW.archived_at
          OR OLD.active IS DISTINCT FROM NEW.active
          OR OLD.pause_note IS DISTINCT FROM NEW.pause_note
          OR OLD.config IS DISTINCT FROM NEW.config
          OR OLD.action IS DISTINCT FROM NEW.action
          OR OLD.action_secrets IS DISTINCT FROM NEW.action_secrets
          OR OLD.template_id IS DISTINCT FROM NEW.template_id
          OR OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION berth_events_trigger_rule();
CREATE CONSTRAINT TRIGGER system_events_delete AFTER DELETE ON trigger_rules
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_trigger_rule();

-- A topic rule's firing keeps the message it fired on here (content, properties,
-- context, producer), for settling to hand to the run; `description` names the message
-- only, so the event stays small where it is listed.
ALTER TABLE trigger_events ADD COLUMN message jsonb;

CREATE FUNCTION berth_events_trigger_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM berth_emit(
        NEW.workspace_id,
        'berth.triggers',
        'trigger_event.' || NEW.outcome,
        NEW.id,
        jsonb_build_object(
            'id', NEW.id,
            'rule_id', NEW.rule_id,
            'rule', (SELECT r.name FROM trigger_rules r WHERE r.id = NEW.rule_id),
            'kind', NEW.kind,
            'outcome', NEW.outcome,
            'reason', NEW.reason,
            'nominal_at', NEW.nominal_at,
            'description', NEW.description,
            'work_request_id', NEW.work_request_id,
            'occurred_at', NEW.occurred_at,
            'settled_at', NEW.settled_at,
            'trigger', CASE WHEN NEW.rule_id IS NULL THEN NULL ELSE jsonb_build_object(
                'rule_id', NEW.rule_id,
                'event_id', NEW.id,
                'rules', coalesce(NEW.description -> 'cause_rules', '[]'::jsonb)
                         || to_jsonb(NEW.rule_id::text)) END));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER system_events_insert AFTER INSERT ON trigger_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION berth_events_trigger_event();
CREATE CONSTRAINT TRIGGER system_events_update AFTER UPDATE ON trigger_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.outcome IS DISTINCT FROM NEW.outcome)
    EXECUTE FUNCTION berth_events_trigger_event();
