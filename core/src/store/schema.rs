//! Diesel's view of the tables in `migrations/`. Written by hand to match them; the
//! `schema_matches_migrations` test in `tests/` compares both against a migrated database.

diesel::table! {
    users (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
        admin -> Bool,
        enabled -> Bool,
    }
}

diesel::table! {
    tokens (id) {
        id -> Uuid,
        hash -> Bytea,
        role -> Text,
        user_id -> Nullable<Uuid>,
        worker_name -> Text,
        comment -> Text,
        enabled -> Bool,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    workspaces (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
        public -> Bool,
        default_expiry_seconds -> Nullable<Int8>,
        archived_at -> Nullable<Timestamptz>,
        max_running -> Nullable<Int4>,
        max_pending -> Nullable<Int4>,
        weight -> Int4,
    }
}

diesel::table! {
    workspace_members (workspace_id, user_id) {
        workspace_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    workers (id) {
        id -> Uuid,
        name -> Text,
        token_id -> Nullable<Uuid>,
        labels -> Jsonb,
        metadata -> Jsonb,
        concurrency -> Int4,
        enabled -> Bool,
        draining -> Bool,
        connected_at -> Nullable<Timestamptz>,
        last_heartbeat_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        workspaces -> Nullable<Array<Uuid>>,
    }
}

diesel::table! {
    work_requests (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        status -> Text,
        result -> Nullable<Text>,
        spec -> Jsonb,
        secret_env -> Nullable<Bytea>,
        secret_env_keys -> Array<Text>,
        requirements -> Jsonb,
        priority_base -> Int4,
        priority_adjustment -> Int4,
        created_by -> Uuid,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        exit_code -> Nullable<Int4>,
        reason -> Text,
        parent_id -> Nullable<Uuid>,
        unblock_strategy -> Text,
        allow_failure -> Bool,
        retry_budget -> Int4,
        attempt_count -> Int4,
        log_bytes -> Int8,
        log_truncated -> Bool,
        message -> Text,
        retries_left -> Int4,
        retry_backoff_ms -> Int8,
        not_before -> Nullable<Timestamptz>,
        name -> Text,
        kind -> Text,
        template_id -> Nullable<Uuid>,
        template_version -> Nullable<Int4>,
        traceparent -> Nullable<Text>,
    }
}

diesel::table! {
    work_request_dependencies (work_request_id, depends_on_id) {
        work_request_id -> Uuid,
        depends_on_id -> Uuid,
    }
}

diesel::table! {
    attempts (work_request_id, number) {
        work_request_id -> Uuid,
        number -> Int4,
        worker_id -> Nullable<Uuid>,
        worker_name -> Text,
        state -> Text,
        container_id -> Text,
        exit_code -> Nullable<Int4>,
        reason -> Text,
        assigned_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        peak_memory_bytes -> Nullable<Int8>,
        cpu_time_ns -> Nullable<Int8>,
        pull_ms -> Nullable<Int8>,
        stdout_bytes -> Int8,
        stderr_bytes -> Int8,
        system_bytes -> Int8,
        outcome -> Nullable<Text>,
        message -> Text,
        run_ms -> Nullable<Int8>,
        log_incomplete -> Text,
        stop_requested_at -> Nullable<Timestamptz>,
        output_artifact_id -> Nullable<Uuid>,
        has_healthcheck -> Bool,
        health -> Nullable<Text>,
        health_output -> Text,
        health_at -> Nullable<Timestamptz>,
        ports -> Jsonb,
    }
}

diesel::table! {
    log_chunks (work_request_id, attempt, stream, byte_offset) {
        work_request_id -> Uuid,
        attempt -> Int4,
        stream -> Int2,
        byte_offset -> Int8,
        data -> Bytea,
        created_at -> Timestamptz,
        seq -> Int8,
    }
}

diesel::table! {
    file_stores (id) {
        id -> Uuid,
        name -> Text,
        backend -> Text,
        max_size -> Nullable<Int8>,
        total_size -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    files (sha256, size) {
        sha256 -> Bytea,
        size -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    file_in_store (store_id, sha256, size) {
        store_id -> Uuid,
        sha256 -> Bytea,
        size -> Int8,
        stored_at -> Timestamptz,
        unreferenced_since -> Nullable<Timestamptz>,
        deleting -> Bool,
    }
}

diesel::table! {
    artifacts (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        store_id -> Uuid,
        category -> Text,
        data -> Jsonb,
        created_by -> Nullable<Uuid>,
        work_request_id -> Nullable<Uuid>,
        attempt -> Nullable<Int4>,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        complete -> Bool,
        completed_at -> Nullable<Timestamptz>,
        total_size -> Int8,
        file_count -> Int4,
    }
}

diesel::table! {
    artifact_files (artifact_id, path) {
        artifact_id -> Uuid,
        path -> Text,
        sha256 -> Nullable<Bytea>,
        size -> Nullable<Int8>,
        mode -> Int4,
        symlink -> Nullable<Text>,
        uploaded -> Bool,
    }
}

diesel::table! {
    file_uploads (artifact_id, path) {
        artifact_id -> Uuid,
        path -> Text,
        store_id -> Uuid,
        staging_key -> Text,
        multipart_id -> Text,
        committed_size -> Int8,
        hash_state -> Nullable<Bytea>,
        parts -> Array<Text>,
        started_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    artifact_relations (from_id, to_id, kind) {
        from_id -> Uuid,
        to_id -> Uuid,
        kind -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    collections (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        category -> Text,
        keep_last -> Nullable<Int4>,
        keep_seconds -> Nullable<Int8>,
        history_seconds -> Int8,
        metadata_seconds -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    collection_items (id) {
        id -> Uuid,
        collection_id -> Uuid,
        name -> Text,
        artifact_id -> Nullable<Uuid>,
        category -> Text,
        data -> Jsonb,
        pinned -> Bool,
        added_by -> Nullable<Uuid>,
        added_at -> Timestamptz,
        removed_at -> Nullable<Timestamptz>,
        removed_why -> Nullable<Text>,
    }
}

diesel::table! {
    work_request_inputs (work_request_id, mount) {
        work_request_id -> Uuid,
        mount -> Text,
        artifact_id -> Nullable<Uuid>,
        from_work_request_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    templates (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        kind -> Text,
        name -> Text,
        description -> Text,
        active -> Bool,
        latest_version -> Int4,
        created_by -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    template_releases (template_id, version) {
        template_id -> Uuid,
        version -> Int4,
        spec -> Jsonb,
        secret_env -> Nullable<Bytea>,
        secret_env_keys -> Array<Text>,
        changes -> Jsonb,
        summary -> Text,
        note -> Text,
        rolled_back_from -> Nullable<Int4>,
        created_by -> Uuid,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    services (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        template_id -> Uuid,
        version -> Int4,
        stable_version -> Nullable<Int4>,
        processes -> Jsonb,
        restart_policy -> Text,
        backoff_initial_ms -> Int8,
        backoff_max_ms -> Int8,
        stable_after_ms -> Int8,
        success_delay_ms -> Int8,
        max_local_restarts -> Int4,
        min_healthy_ms -> Int8,
        deploy_deadline_ms -> Int8,
        ports -> Jsonb,
        deploy_state -> Text,
        deploy_from -> Nullable<Int4>,
        deploy_auto_revert -> Bool,
        deploy_started_at -> Nullable<Timestamptz>,
        deploy_deadline_at -> Nullable<Timestamptz>,
        deploy_step_ms -> Nullable<Int8>,
        deploy_message -> Text,
        created_by -> Uuid,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    service_slots (service_id, process, slot_index) {
        service_id -> Uuid,
        process -> Text,
        slot_index -> Int4,
        request_id -> Nullable<Uuid>,
        version -> Int4,
        next_request_id -> Nullable<Uuid>,
        next_version -> Nullable<Int4>,
        failures -> Int4,
        local_failures -> Int4,
        last_worker_id -> Nullable<Uuid>,
        restart_at -> Nullable<Timestamptz>,
        healthy_since -> Nullable<Timestamptz>,
        exited -> Bool,
    }
}

diesel::table! {
    service_runs (request_id) {
        request_id -> Uuid,
        service_id -> Uuid,
        process -> Text,
        slot_index -> Int4,
        version -> Int4,
    }
}

diesel::table! {
    request_placement (request_id) {
        request_id -> Uuid,
        pin_worker_id -> Nullable<Uuid>,
        avoid_worker_id -> Nullable<Uuid>,
        why -> Text,
    }
}

diesel::table! {
    service_events (id) {
        id -> Int8,
        service_id -> Uuid,
        process -> Nullable<Text>,
        slot_index -> Nullable<Int4>,
        at -> Timestamptz,
        kind -> Text,
        reason -> Text,
        version -> Nullable<Int4>,
        request_id -> Nullable<Uuid>,
        worker_id -> Nullable<Uuid>,
        exit_code -> Nullable<Int4>,
        by_user -> Nullable<Uuid>,
    }
}

diesel::table! {
    trigger_rules (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        kind -> Text,
        config -> Jsonb,
        template_id -> Uuid,
        action -> Jsonb,
        action_secrets -> Nullable<Bytea>,
        active -> Bool,
        pause_note -> Text,
        archived_at -> Nullable<Timestamptz>,
        created_by -> Uuid,
        created_at -> Timestamptz,
        modified_at -> Timestamptz,
        last_fired_at -> Nullable<Timestamptz>,
        next_fire_at -> Nullable<Timestamptz>,
        buffered_at -> Nullable<Timestamptz>,
        watch_from -> Timestamptz,
    }
}

diesel::table! {
    trigger_events (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        rule_id -> Nullable<Uuid>,
        kind -> Text,
        outcome -> Text,
        reason -> Text,
        nominal_at -> Nullable<Timestamptz>,
        dedupe -> Text,
        description -> Jsonb,
        run_as -> Nullable<Uuid>,
        work_request_id -> Nullable<Uuid>,
        occurred_at -> Timestamptz,
        settled_at -> Nullable<Timestamptz>,
        message -> Nullable<Jsonb>,
    }
}

diesel::table! {
    trigger_clock (id) {
        id -> Int4,
        last_pass_at -> Timestamptz,
    }
}

diesel::table! {
    topics (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        slug -> Text,
        description -> Text,
        is_public -> Bool,
        is_system -> Bool,
        store_policy -> Text,
        max_age_ms -> Nullable<Int8>,
        max_messages -> Nullable<Int8>,
        api_info -> Jsonb,
        garbage_collect_at -> Nullable<Timestamptz>,
        response_for -> Nullable<Uuid>,
        owner_id -> Nullable<Uuid>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        last_ping_at -> Nullable<Timestamptz>,
        last_pong_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    topic_grants (topic_id, principal) {
        topic_id -> Uuid,
        principal -> Text,
        can_produce -> Bool,
        can_consume -> Bool,
    }
}

diesel::table! {
    topic_messages (topic_id, seq) {
        topic_id -> Uuid,
        seq -> Int8,
        message_id -> Uuid,
        context -> Text,
        content -> Jsonb,
        properties -> Jsonb,
        producer_id -> Nullable<Uuid>,
        producer -> Text,
        published_at -> Timestamptz,
    }
}

diesel::table! {
    topic_message_ids (topic_id, message_id) {
        topic_id -> Uuid,
        message_id -> Uuid,
        seq -> Int8,
        published_at -> Timestamptz,
    }
}

diesel::table! {
    subscriptions (id) {
        id -> Uuid,
        topic_id -> Uuid,
        name -> Text,
        internal -> Bool,
        ack_deadline_ms -> Int4,
        max_deliveries -> Int4,
        backoff_ms -> Array<Int4>,
        max_in_flight -> Int4,
        dead_letter_topic_id -> Nullable<Uuid>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    subscription_messages (subscription_id, seq) {
        subscription_id -> Uuid,
        seq -> Int8,
        topic_id -> Uuid,
        visible_at -> Timestamptz,
        delivery_count -> Int4,
        leased_until -> Nullable<Timestamptz>,
        consumer_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    topic_consumers (id) {
        id -> Uuid,
        subscription_id -> Uuid,
        topic_id -> Uuid,
        replica_id -> Uuid,
        user_id -> Nullable<Uuid>,
        connected_at -> Timestamptz,
        seen_at -> Timestamptz,
    }
}

diesel::table! {
    system_events (seq) {
        seq -> Int8,
        id -> Uuid,
        workspace_id -> Uuid,
        topic -> Text,
        event_type -> Text,
        object_id -> Uuid,
        occurred_at -> Timestamptz,
        data -> Jsonb,
        relayed_at -> Nullable<Timestamptz>,
        relay_error -> Nullable<Text>,
    }
}

diesel::table! {
    notification_channels (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        name -> Text,
        kind -> Text,
        url -> Text,
        header_names -> Array<Text>,
        sealed -> Nullable<Bytea>,
        recipients -> Array<Text>,
        subject_prefix -> Text,
        event_types -> Array<Text>,
        enabled -> Bool,
        disabled_reason -> Text,
        disabled_at -> Nullable<Timestamptz>,
        failures_in_row -> Int4,
        last_error -> Text,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        modified_at -> Timestamptz,
    }
}

diesel::table! {
    notification_reactions (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        object_kind -> Text,
        object_id -> Uuid,
        on_event -> Text,
        channel_id -> Uuid,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    notification_deliveries (id) {
        id -> Uuid,
        workspace_id -> Uuid,
        channel_id -> Uuid,
        event_id -> Uuid,
        event_type -> Text,
        object_id -> Uuid,
        body -> Text,
        state -> Text,
        test -> Bool,
        attempts -> Int4,
        series_attempts -> Int4,
        next_attempt_at -> Timestamptz,
        claim -> Nullable<Uuid>,
        leased_until -> Nullable<Timestamptz>,
        last_error -> Text,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    notification_attempts (delivery_id, number) {
        delivery_id -> Uuid,
        number -> Int4,
        at -> Timestamptz,
        status_code -> Int4,
        error -> Text,
        latency_ms -> Int8,
        response -> Text,
        request_headers -> Jsonb,
        will_retry -> Bool,
    }
}

diesel::table! {
    web_sessions (id) {
        id -> Uuid,
        secret_hash -> Bytea,
        token_id -> Uuid,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::joinable!(tokens -> users (user_id));
diesel::joinable!(web_sessions -> tokens (token_id));
diesel::joinable!(work_requests -> workspaces (workspace_id));
diesel::joinable!(work_requests -> users (created_by));
diesel::joinable!(attempts -> work_requests (work_request_id));
diesel::joinable!(workspace_members -> workspaces (workspace_id));
diesel::joinable!(workspace_members -> users (user_id));
diesel::joinable!(artifacts -> workspaces (workspace_id));
diesel::joinable!(artifacts -> file_stores (store_id));
diesel::joinable!(artifact_files -> artifacts (artifact_id));
diesel::joinable!(file_in_store -> file_stores (store_id));
diesel::joinable!(collections -> workspaces (workspace_id));
diesel::joinable!(collection_items -> collections (collection_id));
diesel::joinable!(collection_items -> artifacts (artifact_id));
diesel::joinable!(collection_items -> users (added_by));
diesel::joinable!(templates -> workspaces (workspace_id));
diesel::joinable!(template_releases -> templates (template_id));
diesel::joinable!(work_requests -> templates (template_id));
diesel::joinable!(services -> workspaces (workspace_id));
diesel::joinable!(services -> templates (template_id));
diesel::joinable!(service_slots -> services (service_id));
diesel::joinable!(service_events -> services (service_id));
diesel::joinable!(service_runs -> services (service_id));
diesel::joinable!(service_runs -> work_requests (request_id));
diesel::joinable!(request_placement -> work_requests (request_id));
diesel::joinable!(trigger_rules -> workspaces (workspace_id));
diesel::joinable!(trigger_rules -> templates (template_id));
diesel::joinable!(trigger_events -> trigger_rules (rule_id));
diesel::joinable!(topics -> workspaces (workspace_id));
diesel::joinable!(topic_grants -> topics (topic_id));
diesel::joinable!(topic_messages -> topics (topic_id));
diesel::joinable!(subscriptions -> topics (topic_id));
diesel::joinable!(subscription_messages -> subscriptions (subscription_id));
diesel::joinable!(topic_consumers -> subscriptions (subscription_id));
diesel::joinable!(notification_channels -> workspaces (workspace_id));
diesel::joinable!(notification_reactions -> notification_channels (channel_id));
diesel::joinable!(notification_deliveries -> notification_channels (channel_id));
diesel::joinable!(notification_attempts -> notification_deliveries (delivery_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    tokens,
    workspaces,
    workspace_members,
    workers,
    work_requests,
    work_request_dependencies,
    attempts,
    log_chunks,
    file_stores,
    files,
    file_in_store,
    artifacts,
    artifact_files,
    file_uploads,
    artifact_relations,
    collections,
    collection_items,
    work_request_inputs,
    templates,
    template_releases,
    services,
    service_slots,
    service_events,
    service_runs,
    request_placement,
    trigger_rules,
    trigger_events,
    trigger_clock,
    topics,
    topic_grants,
    topic_messages,
    topic_message_ids,
    subscriptions,
    subscription_messages,
    topic_consumers,
    system_events,
    notification_channels,
    notification_reactions,
    notification_deliveries,
    notification_attempts,
    web_sessions,
);
