-- 000021's definitions again.
CREATE OR REPLACE FUNCTION berth_emit(p_workspace uuid, p_topic text, p_type text, p_object uuid, p_data jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO system_events (workspace_id, topic, event_type, object_id, data)
    VALUES (p_workspace, p_topic, p_type, p_object, p_data)
$$;

-- Which trigger rules' firings led to a request (or the workflow it is a step of): the
-- rule whose firing made it, its event, and with them every rule before it in the chain
-- (`cause_rules` of that firing, for a topic rule fired by an event that was itself
-- caused by rules). NULL for a request no rule made. Topic rules use it to never fire on
-- what their own firings caused, however long the loop.
CREATE OR REPLACE FUNCTION berth_cause(p_request uuid, p_parent uuid) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION berth_work_request_state(r work_requests) RETURNS jsonb
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

CREATE OR REPLACE FUNCTION berth_events_work_request() RETURNS trigger LANGUAGE plpgsql AS $$
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

