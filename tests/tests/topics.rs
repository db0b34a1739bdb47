//! Topics on a real database: the contract the system events relay and topic trigger
//! rules use (system events published once per id; internal subscriptions taken and
//! accepted inside the caller's transaction, shared with `SKIP LOCKED`, applying the store
//! policy), and the topics API over real gRPC.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use berth_core::error::Error;
use berth_core::store::db::{DbPool, DbSettings, connect_pool};
use berth_core::topics as core_topics;
use berth_tests::{fresh_database, query};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

use std::sync::Arc;
use std::time::Duration;

use berth_common::proto::{
    AckKind, AckStatus, Availability, CreateSubscriptionRequest, CreateTopicRequest,
    DeleteSubscriptionRequest, DeleteTopicRequest, GetSubscriptionRequest, GetTopicRequest,
    ListSubscriptionsRequest, ListTopicsRequest, PingTopicRequest, PublishMessage, Role,
    SeekSubscriptionRequest, StartKind, StorePolicy, SubscribeRequest, SubscriptionStart,
    TopicGrant, TopicGrants, TopicRetention, UpdateTopicRequest, seek_subscription_request,
};
use berth_core::live::hub::Hub;
use berth_core::topics::Topics;
use berth_tests::topics::{Consumer, message, publish, subscription, topic, topics, try_publish};
use berth_tests::{TestServer, assert_code, at, eventually};
use tonic::Code;

/// A fresh, migrated database and a pool on it.
async fn database() -> (String, DbPool) {
    let url = fresh_database().await;
    let pool = connect_pool(&DbSettings {
        url: url.clone(),
        ca_cert: None,
        pool_size: 4,
    })
    .await
    .unwrap();
    (url, pool)
}

async fn default_workspace(url: &str) -> Uuid {
    query(url, "SELECT id FROM workspaces WHERE name = 'default'").await[0].get(0)
}

async fn count(url: &str, sql: &str) -> i64 {
    query(url, sql).await[0].get(0)
}

/// Publishes system event `n` on `berth.work-requests` in its own transaction.
async fn event(pool: &DbPool, workspace: Uuid, n: u32) -> (Uuid, Option<i64>) {
    let id = Uuid::now_v7();
    let mut conn = pool.get().await.unwrap();
    let seq = core_topics::publish_system(
        &mut conn,
        workspace,
        "berth.work-requests",
        id,
        &json!({ "n": n }),
    )
    .await
    .unwrap();
    (id, seq)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_system_event_is_published_once_per_id_on_its_system_topic() {
    let (url, pool) = database().await;
    let workspace = default_workspace(&url).await;
    let mut conn = pool.get().await.unwrap();
    let id = Uuid::now_v7();
    let content = json!({"type": "work_request.created"});
    let first =
        core_topics::publish_system(&mut conn, workspace, "berth.work-requests", id, &content)
            .await
            .unwrap();
    assert!(first.is_some(), "the first publish stores the event");
    let again =
        core_topics::publish_system(&mut conn, workspace, "berth.work-requests", id, &content)
            .await
            .unwrap();
    assert_eq!(again, None, "a second publish of the id stores nothing");
    let rows = query(
        &url,
        "SELECT t.is_system, t.store_policy, t.max_age_ms IS NOT NULL, m.producer, m.content::text \
         FROM topics t JOIN topic_messages m ON m.topic_id = t.id WHERE t.slug = 'berth.work-requests'",
    )
    .await;
    assert_eq!(rows.len(), 1, "exactly one message is stored");
    assert!(rows[0].get::<_, bool>(0), "the topic is a system topic");
    assert_eq!(rows[0].get::<_, String>(1), "store");
    assert!(
        rows[0].get::<_, bool>(2),
        "a system topic keeps its events for a while only"
    );
    assert_eq!(rows[0].get::<_, String>(3), "berth");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rows[0].get::<_, String>(4)).unwrap(),
        content
    );
    // Inside a caller's transaction that rolls back, nothing is kept.
    let rolled = Uuid::now_v7();
    let _ = (*conn)
        .transaction::<(), Error, _>(async |conn: &mut AsyncPgConnection| {
            core_topics::publish_system(conn, workspace, "berth.workers", rolled, &content).await?;
            Err(Error::Aborted("the caller rolls back".into()))
        })
        .await;
    assert_eq!(
        count(
            &url,
            &format!("SELECT count(*) FROM topic_message_ids WHERE message_id = '{rolled}'")
        )
        .await,
        0
    );
    let refused = core_topics::publish_system(
        &mut conn,
        workspace,
        "berth.nonsense",
        Uuid::now_v7(),
        &content,
    )
    .await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_internal_subscription_is_taken_and_accepted_inside_the_callers_transaction() {
    let (url, pool) = database().await;
    let workspace = default_workspace(&url).await;
    let mut conn = pool.get().await.unwrap();
    // Before anything was ever published: a system topic always exists.
    let sub = core_topics::open_internal(&mut conn, workspace, "berth.work-requests", "rule-1")
        .await
        .unwrap();
    let again = core_topics::open_internal(&mut conn, workspace, "berth.work-requests", "rule-1")
        .await
        .unwrap();
    assert_eq!(sub, again, "opening again finds the same subscription");
    let mut seqs = Vec::new();
    for n in 0..3 {
        seqs.push(event(&pool, workspace, n).await.1.unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs grow: {seqs:?}");

    // A taker that rolls back leaves everything owed.
    (*conn)
        .transaction::<(), Error, _>(async |conn: &mut AsyncPgConnection| {
            let taken = core_topics::take_internal(conn, sub, 10).await?;
            assert_eq!(taken.len(), 3);
            Err(Error::Aborted("rolled back".into()))
        })
        .await
        .unwrap_err();

    // Two takers at once share the messages: the second skips what the first holds.
    let mut first = pool.get().await.unwrap();
    let mut second = pool.get().await.unwrap();
    let (tx_started, started) = tokio::sync::oneshot::channel::<()>();
    let (tx_done, done) = tokio::sync::oneshot::channel::<Vec<i64>>();
    let holder = tokio::spawn(async move {
        (*first)
            .transaction::<(), Error, _>(async |conn: &mut AsyncPgConnection| {
                let taken = core_topics::take_internal(conn, sub, 2).await?;
                let seqs: Vec<i64> = taken.iter().map(|m| m.seq).collect();
                assert_eq!(taken[0].content, json!({"n": 0}));
                assert_eq!(taken[0].producer, "berth");
                tx_started.send(()).unwrap();
                // Hold the rows until the other taker has looked.
                let others: Vec<i64> = done.await.unwrap();
                assert!(
                    others.iter().all(|s| !seqs.contains(s)),
                    "{others:?} vs {seqs:?}"
                );
                core_topics::accept_internal(conn, sub, &seqs).await?;
                Ok(())
            })
            .await
            .unwrap();
    });
    started.await.unwrap();
    let others = (*second)
        .transaction::<Vec<i64>, Error, _>(async |conn: &mut AsyncPgConnection| {
            let taken = core_topics::take_internal(conn, sub, 10).await?;
            let seqs: Vec<i64> = taken.iter().map(|m| m.seq).collect();
            core_topics::accept_internal(conn, sub, &seqs).await?;
            Ok(seqs)
        })
        .await
        .unwrap();
    assert_eq!(
        others,
        vec![seqs[2]],
        "the second taker gets only what the first does not hold"
    );
    tx_done.send(others).unwrap();
    holder.await.unwrap();
    assert_eq!(
        count(
            &url,
            &format!("SELECT count(*) FROM subscription_messages WHERE subscription_id = '{sub}'")
        )
        .await,
        0,
        "everything taken was accepted"
    );
    // `store` keeps the messages themselves.
    assert_eq!(count(&url, "SELECT count(*) FROM topic_messages").await, 3);
    let mut conn = pool.get().await.unwrap();
    assert!(
        core_topics::take_internal(&mut conn, sub, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_accepts_apply_the_store_policy_of_the_topic() {
    let (url, pool) = database().await;
    let workspace = default_workspace(&url).await;
    let mut conn = pool.get().await.unwrap();
    let a = core_topics::open_internal(&mut conn, workspace, "berth.workers", "a")
        .await
        .unwrap();
    let b = core_topics::open_internal(&mut conn, workspace, "berth.workers", "b")
        .await
        .unwrap();
    let publish = async |n: u32| -> i64 {
        let mut conn = pool.get().await.unwrap();
        core_topics::publish_system(
            &mut conn,
            workspace,
            "berth.workers",
            Uuid::now_v7(),
            &json!(n),
        )
        .await
        .unwrap()
        .unwrap()
    };
    let stored = async |seq: i64| -> bool {
        count(
            &url,
            &format!("SELECT count(*) FROM topic_messages WHERE seq = {seq}"),
        )
        .await
            == 1
    };
    let owed = async |sub: Uuid| -> i64 {
        count(
            &url,
            &format!("SELECT count(*) FROM subscription_messages WHERE subscription_id = '{sub}'"),
        )
        .await
    };

    // cacheall: deleted once both subscriptions accepted it.
    query(
        &url,
        "UPDATE topics SET store_policy = 'cacheall' WHERE slug = 'berth.workers'",
    )
    .await;
    let seq = publish(1).await;
    core_topics::accept_internal(&mut conn, a, &[seq])
        .await
        .unwrap();
    assert!(stored(seq).await, "b still owes it");
    core_topics::accept_internal(&mut conn, b, &[seq])
        .await
        .unwrap();
    assert!(!stored(seq).await, "every subscription has accepted it");

    // cache: deleted at the first accept, with the other subscription's row.
    query(
        &url,
        "UPDATE topics SET store_policy = 'cache' WHERE slug = 'berth.workers'",
    )
    .await;
    let seq = publish(2).await;
    assert_eq!(owed(b).await, 1);
    core_topics::accept_internal(&mut conn, a, &[seq])
        .await
        .unwrap();
    assert!(!stored(seq).await, "the first accept deletes it");
    assert_eq!(
        owed(b).await,
        0,
        "and what the other subscription owed of it"
    );

    // Dropping a subscription drops what it owed; dropping it again is fine.
    let seq = publish(3).await;
    core_topics::drop_internal(&mut conn, a).await.unwrap();
    core_topics::drop_internal(&mut conn, a).await.unwrap();
    assert_eq!(owed(a).await, 0);
    assert_eq!(owed(b).await, 1);
    assert!(stored(seq).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_subscriptions_need_a_topic_that_stores() {
    let (url, pool) = database().await;
    let workspace = default_workspace(&url).await;
    let mut conn = pool.get().await.unwrap();
    let missing = core_topics::open_internal(&mut conn, workspace, "no-such-topic", "rule").await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    query(
        &url,
        &format!(
            "INSERT INTO topics (id, workspace_id, slug, store_policy) \
             VALUES (gen_random_uuid(), '{workspace}', 'live-only', 'disabled')"
        ),
    )
    .await;
    let disabled = core_topics::open_internal(&mut conn, workspace, "live-only", "rule").await;
    assert!(
        matches!(disabled, Err(Error::FailedPrecondition(_))),
        "{disabled:?}"
    );
    let bad_name =
        core_topics::open_internal(&mut conn, workspace, "berth.workers", "Bad Name").await;
    assert!(
        matches!(bad_name, Err(Error::InvalidArgument(_))),
        "{bad_name:?}"
    );
}

// ----- the API -----

/// The domain's handle on the server's database, for running the collector's pass.
async fn pass_runner(server: &TestServer) -> Topics {
    let pool = connect_pool(&DbSettings {
        url: server.database_url.clone(),
        ca_cert: None,
        pool_size: 2,
    })
    .await
    .unwrap();
    Topics::new(pool, Arc::new(Hub::default()))
}

/// A user `name` with `role` in `default` (none for ""); their token.
async fn member(server: &TestServer, name: &str, role: &str) -> String {
    let (_, token) = server.create_token_without_roles(Role::User, name).await;
    if !role.is_empty() {
        server.set_role("default", name, role).await;
    }
    token
}

fn grant(principal: &str, produce: bool, consume: bool) -> TopicGrant {
    TopicGrant {
        principal: principal.to_owned(),
        produce,
        consume,
    }
}

fn with_id(id: &str, content: serde_json::Value) -> PublishMessage {
    PublishMessage {
        message_id: id.to_owned(),
        ..message(content)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_are_created_read_listed_changed_and_deleted() {
    let server = TestServer::start().await;
    member(&server, "alice", "viewer").await;
    let mut client = topics(&server, &server.admin_token).await;
    let made = client
        .create_topic(CreateTopicRequest {
            slug: "builds.done".into(),
            description: "finished builds".into(),
            store_policy: StorePolicy::Store as i32,
            retention: Some(TopicRetention {
                max_age: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                max_messages: 100,
            }),
            api_info: r#"{"schema": "build/v1"}"#.into(),
            grants: vec![
                grant("role:contributor", true, false),
                grant("user:alice", false, true),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.slug, "builds.done");
    assert_eq!(made.workspace, "default");
    assert_eq!(made.store_policy, StorePolicy::Store as i32);
    assert_eq!(made.retention.as_ref().unwrap().max_messages, 100);
    assert_eq!(
        made.retention.as_ref().unwrap().max_age.unwrap().seconds,
        3600
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&made.api_info).unwrap(),
        json!({"schema": "build/v1"})
    );
    let principals: Vec<&str> = made.grants.iter().map(|g| g.principal.as_str()).collect();
    assert_eq!(
        principals,
        ["role:contributor", "user:alice"],
        "users are shown by name"
    );
    assert_eq!(
        made.availability.as_ref().unwrap().state,
        Availability::Unknown as i32
    );

    // The default policy is cache.
    let plain = client
        .create_topic(CreateTopicRequest {
            slug: "plain".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.store_policy, StorePolicy::Cache as i32);
    let listed = client
        .list_topics(ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let slugs: Vec<&str> = listed.topics.iter().map(|t| t.slug.as_str()).collect();
    assert_eq!(slugs, ["builds.done", "plain"]);

    let changed = client
        .update_topic(UpdateTopicRequest {
            slug: "builds.done".into(),
            description: Some("every build".into()),
            public: Some(true),
            retention: Some(TopicRetention::default()),
            api_info: Some(r#"{"schema": "build/v2"}"#.into()),
            grants: Some(TopicGrants {
                grants: vec![grant("role:viewer", true, true)],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(changed.description, "every build");
    assert!(changed.public);
    assert_eq!(
        changed.retention.unwrap(),
        TopicRetention::default(),
        "no limit any more"
    );
    assert_eq!(changed.grants, vec![grant("role:viewer", true, true)]);
    assert!(changed.api_info.contains("build/v2"));

    publish(&server, "builds.done", vec![message(json!({"n": 1}))]).await;
    let got = client
        .get_topic(GetTopicRequest {
            workspace: String::new(),
            slug: "builds.done".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.stored_messages, 1);

    let deleted = client
        .delete_topic(DeleteTopicRequest {
            workspace: String::new(),
            slug: "builds.done".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted);
    assert_code(
        client
            .get_topic(GetTopicRequest {
                workspace: String::new(),
                slug: "builds.done".into(),
            })
            .await,
        Code::NotFound,
        "no topic",
    );
    assert_eq!(
        count(&server.database_url, "SELECT count(*) FROM topic_messages").await,
        0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_naming_what_to_fix() {
    let server = TestServer::start().await;
    let mut client = topics(&server, &server.admin_token).await;
    let create = |slug: &str| CreateTopicRequest {
        slug: slug.to_owned(),
        ..Default::default()
    };
    assert_code(
        client.create_topic(create("Bad Slug")).await,
        Code::InvalidArgument,
        "slug:",
    );
    assert_code(
        client.create_topic(create("berth.mine")).await,
        Code::InvalidArgument,
        "berth.",
    );
    assert_code(
        client.create_topic(create("")).await,
        Code::InvalidArgument,
        "is empty",
    );
    client.create_topic(create("jobs")).await.unwrap();
    assert_code(
        client.create_topic(create("jobs")).await,
        Code::AlreadyExists,
        "jobs",
    );
    for (grants, says) in [
        (vec![grant("group:x", true, false)], "grants[0].principal"),
        (
            vec![grant("user:nobody-here", true, false)],
            "no user named",
        ),
        (
            vec![grant("role:admin", true, false)],
            "not a workspace role",
        ),
        (vec![grant("role:viewer", false, false)], "grants nothing"),
    ] {
        let request = CreateTopicRequest {
            grants,
            ..create("granted")
        };
        assert_code(
            client.create_topic(request).await,
            Code::InvalidArgument,
            says,
        );
    }
    let request = CreateTopicRequest {
        api_info: "[1, 2]".into(),
        ..create("info")
    };
    assert_code(
        client.create_topic(request).await,
        Code::InvalidArgument,
        "api_info",
    );
    let request = CreateTopicRequest {
        store_policy: 42,
        ..create("policy")
    };
    assert_code(
        client.create_topic(request).await,
        Code::InvalidArgument,
        "store_policy",
    );

    // Publishing.
    let publish_to = async |topic: &str, messages: Vec<PublishMessage>| {
        try_publish(&server, &server.admin_token, topic, messages).await
    };
    assert_code(
        publish_to("no-such-topic", vec![message(json!(1))]).await,
        Code::NotFound,
        "no topic",
    );
    assert_code(
        publish_to("jobs", vec![]).await,
        Code::InvalidArgument,
        "messages:",
    );
    let not_json = PublishMessage {
        content: "{nope".into(),
        ..Default::default()
    };
    assert_code(
        publish_to("jobs", vec![not_json]).await,
        Code::InvalidArgument,
        "messages[0].content: not valid JSON",
    );
    let huge = message(json!("x".repeat(300 * 1024)));
    assert_code(
        publish_to("jobs", vec![huge]).await,
        Code::InvalidArgument,
        "262144",
    );
    let bad_id = with_id("not-a-uuid", json!(1));
    assert_code(
        publish_to("jobs", vec![message(json!(0)), bad_id]).await,
        Code::InvalidArgument,
        "messages[1].message_id",
    );
    assert_eq!(
        count(&server.database_url, "SELECT count(*) FROM topic_messages").await,
        0
    );

    // Subscriptions.
    let sub = |name: &str| CreateSubscriptionRequest {
        topic: "jobs".into(),
        name: name.to_owned(),
        ..Default::default()
    };
    let too_short = CreateSubscriptionRequest {
        ack_deadline: Some(prost_types::Duration {
            seconds: 0,
            nanos: 0,
        }),
        ..sub("short")
    };
    assert_code(
        client.create_subscription(too_short).await,
        Code::InvalidArgument,
        "ack_deadline",
    );
    let nowhere = CreateSubscriptionRequest {
        dead_letter_topic: "nowhere".into(),
        ..sub("dl")
    };
    assert_code(
        client.create_subscription(nowhere).await,
        Code::InvalidArgument,
        "dead_letter_topic",
    );
    let itself = CreateSubscriptionRequest {
        dead_letter_topic: "jobs".into(),
        ..sub("dl")
    };
    assert_code(
        client.create_subscription(itself).await,
        Code::InvalidArgument,
        "another topic",
    );
    topic(&server, "live", StorePolicy::Disabled).await;
    let live_dl = CreateSubscriptionRequest {
        dead_letter_topic: "live".into(),
        ..sub("dl")
    };
    assert_code(
        client.create_subscription(live_dl).await,
        Code::InvalidArgument,
        "stores nothing",
    );
    let missing_topic = CreateSubscriptionRequest {
        topic: "nope".into(),
        ..sub("x")
    };
    assert_code(
        client.create_subscription(missing_topic).await,
        Code::NotFound,
        "no topic",
    );
    client.create_subscription(sub("workers")).await.unwrap();
    assert_code(
        client.create_subscription(sub("workers")).await,
        Code::AlreadyExists,
        "workers",
    );

    // Subscribe: the first frame must be the open; the subscription must exist.
    let (frames, rx) = tokio::sync::mpsc::channel(4);
    frames
        .send(SubscribeRequest {
            frame: Some(berth_common::proto::subscribe_request::Frame::Credit(
                berth_common::proto::SubscribeCredit { n: 5 },
            )),
        })
        .await
        .unwrap();
    let opened = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    assert_code(opened.map(|_| ()), Code::InvalidArgument, "first frame");
    let missing = Consumer::open(&server, &server.admin_token, "", "jobs", "no-such-sub", 1).await;
    assert_code(missing.map(|_| ()), Code::NotFound, "no subscription");
    let no_topic = Consumer::open(&server, &server.admin_token, "", "nope", "workers", 1).await;
    assert_code(no_topic.map(|_| ()), Code::NotFound, "no topic");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_message_id_stores_nothing_even_after_its_message_was_deleted() {
    let server = TestServer::start().await;
    let url = server.database_url.clone();
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "workers", |_| {}).await;
    let (x, y, z) = (
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
        Uuid::now_v7().to_string(),
    );
    publish(&server, "jobs", vec![with_id(&x, json!(1))]).await;
    let again = try_publish(
        &server,
        &server.admin_token,
        "jobs",
        vec![with_id(&x, json!(2))],
    )
    .await;
    assert_code(again, Code::AlreadyExists, &x);
    // A batch with a duplicate stores none of its messages.
    let batch = try_publish(
        &server,
        &server.admin_token,
        "jobs",
        vec![with_id(&y, json!(3)), with_id(&x, json!(4))],
    )
    .await;
    assert_code(batch, Code::AlreadyExists, "messages[1].message_id");
    let twice = try_publish(
        &server,
        &server.admin_token,
        "jobs",
        vec![with_id(&z, json!(5)), with_id(&z, json!(6))],
    )
    .await;
    assert_code(twice, Code::AlreadyExists, "twice");
    for id in [&y, &z] {
        assert_eq!(
            count(
                &url,
                &format!("SELECT count(*) FROM topic_message_ids WHERE message_id = '{id}'")
            )
            .await,
            0,
            "nothing of the refused batch is kept"
        );
    }
    assert_eq!(count(&url, "SELECT count(*) FROM topic_messages").await, 1);

    // Accepted under `cache`, the message is deleted; its id is still taken.
    let mut consumer = Consumer::admin(&server, "jobs", "workers", 10).await;
    let delivery = consumer.delivery().await;
    assert_eq!(delivery.message_id, x);
    assert_eq!(
        consumer
            .ack_all(AckKind::Accept, &[&delivery.delivery_id])
            .await,
        [AckStatus::Ok as i32]
    );
    assert_eq!(count(&url, "SELECT count(*) FROM topic_messages").await, 0);
    let after = try_publish(
        &server,
        &server.admin_token,
        "jobs",
        vec![with_id(&x, json!(7))],
    )
    .await;
    assert_code(after, Code::AlreadyExists, "already published");
    assert_eq!(count(&url, "SELECT count(*) FROM topic_messages").await, 0);
    // An id the server picks is a UUIDv7.
    let seqs = publish(&server, "jobs", vec![message(json!(8))]).await;
    let picked: String = query(
        &url,
        &format!(
            "SELECT message_id::text FROM topic_messages WHERE seq = {}",
            seqs[0]
        ),
    )
    .await[0]
        .get(0);
    assert_eq!(Uuid::parse_str(&picked).unwrap().get_version_num(), 7);
    server.stop().await;
}

/// How many messages of topic `slug` are stored, and how many rows its subscriptions owe.
async fn rows(url: &str, slug: &str) -> (i64, i64) {
    let messages = count(url, &format!(
        "SELECT count(*) FROM topic_messages m JOIN topics t ON t.id = m.topic_id WHERE t.slug = '{slug}'"
    )).await;
    let owed = count(url, &format!(
        "SELECT count(*) FROM subscription_messages sm JOIN topics t ON t.id = sm.topic_id WHERE t.slug = '{slug}'"
    )).await;
    (messages, owed)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_store_policy_deletes_messages_as_it_says() {
    let server = TestServer::start().await;
    let url = server.database_url.clone();
    for (slug, policy) in [
        ("c", StorePolicy::Cache),
        ("ca", StorePolicy::Cacheall),
        ("s", StorePolicy::Store),
    ] {
        topic(&server, slug, policy).await;
        subscription(&server, slug, "one", |_| {}).await;
        subscription(&server, slug, "two", |_| {}).await;
        publish(&server, slug, vec![message(json!({"policy": slug}))]).await;
        assert_eq!(
            rows(&url, slug).await,
            (1, 2),
            "{slug}: stored once, owed by both"
        );
    }
    let accept_one = async |slug: &str, sub: &str| {
        let mut consumer = Consumer::admin(&server, slug, sub, 1).await;
        let d = consumer.delivery().await;
        consumer.ack_all(AckKind::Accept, &[&d.delivery_id]).await
    };
    // cache: the first accept deletes it, and the other subscription's row with it.
    assert_eq!(accept_one("c", "one").await, [AckStatus::Ok as i32]);
    assert_eq!(rows(&url, "c").await, (0, 0));
    // cacheall: kept until the last row is gone (accepted, or rejected to no dead letters).
    assert_eq!(accept_one("ca", "one").await, [AckStatus::Ok as i32]);
    assert_eq!(rows(&url, "ca").await, (1, 1));
    let mut two = Consumer::admin(&server, "ca", "two", 1).await;
    let d = two.delivery().await;
    assert_eq!(
        two.ack_all(AckKind::Reject, &[&d.delivery_id]).await,
        [AckStatus::Ok as i32]
    );
    assert_eq!(rows(&url, "ca").await, (0, 0));
    // store: kept after every subscription accepted it.
    accept_one("s", "one").await;
    accept_one("s", "two").await;
    assert_eq!(rows(&url, "s").await, (1, 0));

    // cacheall with no subscription keeps nothing; cache keeps it for a later subscriber.
    topic(&server, "ca-empty", StorePolicy::Cacheall).await;
    publish(&server, "ca-empty", vec![message(json!(1))]).await;
    assert_eq!(rows(&url, "ca-empty").await, (0, 0));
    topic(&server, "c-empty", StorePolicy::Cache).await;
    publish(&server, "c-empty", vec![message(json!(1))]).await;
    assert_eq!(rows(&url, "c-empty").await, (1, 0));
    subscription(&server, "c-empty", "late", |r| {
        r.start = Some(SubscriptionStart {
            kind: StartKind::All as i32,
            ..Default::default()
        });
    })
    .await;
    assert_eq!(
        rows(&url, "c-empty").await,
        (1, 1),
        "a subscription from all is owed what is stored"
    );

    // disabled: nothing stored, ever.
    topic(&server, "d", StorePolicy::Disabled).await;
    subscription(&server, "d", "one", |_| {}).await;
    publish(&server, "d", vec![message(json!(1))]).await;
    assert_eq!(rows(&url, "d").await, (0, 0));

    // store: retention by count and by age, applied by the collector's pass.
    let runner = pass_runner(&server).await;
    topics(&server, &server.admin_token)
        .await
        .update_topic(UpdateTopicRequest {
            slug: "s".into(),
            retention: Some(TopicRetention {
                max_age: None,
                max_messages: 2,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let seqs = publish(
        &server,
        "s",
        vec![message(json!(2)), message(json!(3)), message(json!(4))],
    )
    .await;
    runner.pass_once().await.unwrap();
    let kept: Vec<i64> = query(&url, "SELECT m.seq FROM topic_messages m JOIN topics t ON t.id = m.topic_id WHERE t.slug = 's' ORDER BY m.seq")
        .await
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept, seqs[1..], "the newest two are kept");
    query(&url, "UPDATE topic_messages SET published_at = now() - interval '2 hours' WHERE seq IN (SELECT m.seq FROM topic_messages m JOIN topics t ON t.id = m.topic_id WHERE t.slug = 's' ORDER BY m.seq LIMIT 1)").await;
    topics(&server, &server.admin_token)
        .await
        .update_topic(UpdateTopicRequest {
            slug: "s".into(),
            retention: Some(TopicRetention {
                max_age: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                max_messages: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    runner.pass_once().await.unwrap();
    assert_eq!(
        rows(&url, "s").await.0,
        1,
        "the message older than an hour is gone"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn system_topics_are_read_by_readers_and_written_by_nobody() {
    let server = TestServer::start().await;
    let viewer = member(&server, "vera", "viewer").await;
    let mut admin = topics(&server, &server.admin_token).await;
    let refused_publish = try_publish(
        &server,
        &server.admin_token,
        "berth.workers",
        vec![message(json!(1))],
    )
    .await;
    assert_code(refused_publish, Code::PermissionDenied, "system topic");
    assert_code(
        admin
            .delete_topic(DeleteTopicRequest {
                workspace: String::new(),
                slug: "berth.workers".into(),
            })
            .await,
        Code::PermissionDenied,
        "system topic",
    );
    assert_code(
        admin
            .update_topic(UpdateTopicRequest {
                slug: "berth.workers".into(),
                public: Some(true),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "system topic",
    );
    assert_code(
        admin
            .ping(PingTopicRequest {
                workspace: String::new(),
                topic: "berth.workers".into(),
            })
            .await,
        Code::PermissionDenied,
        "system topic",
    );
    // A viewer subscribes, and gets the events Berth publishes.
    let mut client = topics(&server, &viewer).await;
    let made = client
        .create_subscription(CreateSubscriptionRequest {
            topic: "berth.work-requests".into(),
            name: "vera".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(made.created_by, "vera");
    let got = client
        .get_topic(GetTopicRequest {
            workspace: String::new(),
            slug: "berth.work-requests".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.system);
    let mut consumer = Consumer::open(&server, &viewer, "", "berth.work-requests", "vera", 5)
        .await
        .unwrap();
    let events = connect_pool(&DbSettings {
        url: server.database_url.clone(),
        ca_cert: None,
        pool_size: 1,
    })
    .await
    .unwrap();
    let workspace = default_workspace(&server.database_url).await;
    let id = Uuid::now_v7();
    {
        let mut conn = events.get().await.unwrap();
        core_topics::publish_system(
            &mut conn,
            workspace,
            "berth.work-requests",
            id,
            &json!({"type": "work_request.created"}),
        )
        .await
        .unwrap();
    }
    let delivery = consumer.delivery().await;
    assert_eq!(delivery.message_id, id.to_string());
    assert_eq!(delivery.producer, "berth");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_decide_who_publishes_and_consumes() {
    let server = TestServer::start().await;
    let owner = member(&server, "olga", "owner").await;
    let contributor = member(&server, "carl", "contributor").await;
    let viewer = member(&server, "vic", "viewer").await;
    let bob = member(&server, "bob", "viewer").await;
    topics(&server, &server.admin_token)
        .await
        .create_topic(CreateTopicRequest {
            slug: "private".into(),
            grants: vec![
                grant("role:contributor", true, false),
                grant("user:bob", false, true),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    for (token, may) in [
        (&owner, true),
        (&contributor, true),
        (&viewer, false),
        (&bob, false),
    ] {
        let answer = try_publish(&server, token, "private", vec![message(json!(1))]).await;
        if may {
            answer.unwrap();
        } else {
            assert_code(answer, Code::PermissionDenied, "role:contributor");
        }
    }
    for (token, name, may) in [
        (&owner, "olga", true),
        (&bob, "bob", true),
        (&contributor, "carl", false),
        (&viewer, "vic", false),
    ] {
        let answer = topics(&server, token)
            .await
            .create_subscription(CreateSubscriptionRequest {
                topic: "private".into(),
                name: name.to_owned(),
                ..Default::default()
            })
            .await;
        if may {
            answer.unwrap();
        } else {
            assert_code(answer, Code::PermissionDenied, "consumer grant");
        }
    }
    // Bob consumes through his own subscription; the viewer may not even open it.
    let denied = Consumer::open(&server, &viewer, "", "private", "bob", 1).await;
    assert_code(denied.map(|_| ()), Code::PermissionDenied, "consume from");
    let mut consumer = Consumer::open(&server, &bob, "", "private", "bob", 5)
        .await
        .unwrap();
    publish(&server, "private", vec![message(json!({"for": "bob"}))]).await;
    assert_eq!(consumer.delivery().await.content, r#"{"for":"bob"}"#);
    // Only its maker or a contributor deletes a subscription.
    let mut as_viewer = topics(&server, &viewer).await;
    let delete = |name: &str| DeleteSubscriptionRequest {
        workspace: String::new(),
        topic: "private".into(),
        name: name.to_owned(),
    };
    assert_code(
        as_viewer.delete_subscription(delete("bob")).await,
        Code::PermissionDenied,
        "",
    );
    assert!(
        topics(&server, &bob)
            .await
            .delete_subscription(delete("bob"))
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    // The stream of a deleted subscription ends.
    let ended = consumer.ended().await;
    assert_eq!(ended.code(), Code::NotFound, "{ended:?}");
    // A public topic: any member publishes and consumes.
    topics(&server, &server.admin_token)
        .await
        .create_topic(CreateTopicRequest {
            slug: "open".into(),
            public: true,
            ..Default::default()
        })
        .await
        .unwrap();
    try_publish(&server, &viewer, "open", vec![message(json!(1))])
        .await
        .unwrap();
    topics(&server, &viewer)
        .await
        .create_subscription(CreateSubscriptionRequest {
            topic: "open".into(),
            name: "vic".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_response_topic_is_made_for_the_requester_answered_by_consumers_and_collected() {
    let server = TestServer::start().await;
    let url = server.database_url.clone();
    let alice = member(&server, "alice", "contributor").await;
    let bob = member(&server, "bob", "viewer").await;
    let carol = member(&server, "carol", "viewer").await;
    topics(&server, &server.admin_token)
        .await
        .create_topic(CreateTopicRequest {
            slug: "requests".into(),
            grants: vec![
                grant("role:contributor", true, false),
                grant("user:bob", false, true),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let ask = |topic: &str, ttl: Option<&str>| {
        let mut properties =
            std::collections::HashMap::from([("response_topic".to_owned(), topic.to_owned())]);
        if let Some(ttl) = ttl {
            properties.insert("response_ttl".to_owned(), ttl.to_owned());
        }
        PublishMessage {
            content: r#"{"q": "status"}"#.into(),
            properties,
            ..Default::default()
        }
    };
    try_publish(
        &server,
        &alice,
        "requests",
        vec![ask("answers.alice", None)],
    )
    .await
    .unwrap();
    let mut as_alice = topics(&server, &alice).await;
    let answers = as_alice
        .get_topic(GetTopicRequest {
            workspace: String::new(),
            slug: "answers.alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answers.owner.as_str(), answers.response_for.as_str()),
        ("alice", "requests")
    );
    let first_gc = at(answers.garbage_collect_at.as_ref());
    assert!(
        first_gc > std::time::SystemTime::now() + Duration::from_secs(3000),
        "about an hour away"
    );
    // Using it again pushes its collection on.
    try_publish(
        &server,
        &alice,
        "requests",
        vec![ask("answers.alice", None)],
    )
    .await
    .unwrap();
    let again = as_alice
        .get_topic(GetTopicRequest {
            workspace: String::new(),
            slug: "answers.alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(at(again.garbage_collect_at.as_ref()) >= first_gc);

    // Only the requester consumes; the consumers of the request topic answer.
    as_alice
        .create_subscription(CreateSubscriptionRequest {
            topic: "answers.alice".into(),
            name: "mine".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    for token in [&bob, &carol] {
        let answer = topics(&server, token)
            .await
            .create_subscription(CreateSubscriptionRequest {
                topic: "answers.alice".into(),
                name: "theirs".into(),
                ..Default::default()
            })
            .await;
        assert_code(answer, Code::PermissionDenied, "response topic");
        let opened = Consumer::open(&server, token, "", "answers.alice", "mine", 1).await;
        assert_code(opened.map(|_| ()), Code::PermissionDenied, "response topic");
    }
    assert_code(
        try_publish(&server, &carol, "answers.alice", vec![message(json!(0))]).await,
        Code::PermissionDenied,
        "response topic",
    );
    try_publish(
        &server,
        &bob,
        "answers.alice",
        vec![message(json!({"a": "fine"}))],
    )
    .await
    .unwrap();
    let mut consumer = Consumer::open(&server, &alice, "", "answers.alice", "mine", 5)
        .await
        .unwrap();
    assert_eq!(consumer.delivery().await.producer, "bob");
    drop(consumer);
    // Someone else's response topic, or an ordinary topic, cannot be asked for.
    topics(&server, &server.admin_token)
        .await
        .update_topic(UpdateTopicRequest {
            slug: "requests".into(),
            grants: Some(TopicGrants {
                grants: vec![grant("role:viewer", true, true)],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_code(
        try_publish(&server, &bob, "requests", vec![ask("answers.alice", None)]).await,
        Code::PermissionDenied,
        "another user",
    );
    assert_code(
        try_publish(&server, &alice, "requests", vec![ask("requests", None)]).await,
        Code::FailedPrecondition,
        "not a response topic",
    );
    assert_code(
        try_publish(
            &server,
            &alice,
            "requests",
            vec![ask("answers.x", Some("soon"))],
        )
        .await,
        Code::InvalidArgument,
        "response_ttl",
    );

    // A short-lived one is collected, with what it held.
    try_publish(
        &server,
        &alice,
        "requests",
        vec![ask("answers.short", Some("1"))],
    )
    .await
    .unwrap();
    try_publish(&server, &bob, "answers.short", vec![message(json!(1))])
        .await
        .unwrap();
    let runner = pass_runner(&server).await;
    eventually(
        "the short-lived response topic to be collected",
        Duration::from_secs(30),
        || async {
            runner.pass_once().await.unwrap();
            let left = count(
                &url,
                "SELECT count(*) FROM topics WHERE slug = 'answers.short'",
            )
            .await;
            (left == 0).then_some(())
        },
    )
    .await;
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM topics WHERE slug = 'answers.alice'"
        )
        .await,
        1,
        "the other lives on"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seek_moves_a_subscription_to_a_seq_or_a_time_for_what_is_stored() {
    let server = TestServer::start().await;
    topic(&server, "log", StorePolicy::Store).await;
    let seqs = publish(&server, "log", (0..5).map(|n| message(json!(n))).collect()).await;
    subscription(&server, "log", "reader", |r| {
        r.start = Some(SubscriptionStart {
            kind: StartKind::All as i32,
            ..Default::default()
        });
    })
    .await;
    let mut consumer = Consumer::admin(&server, "log", "reader", 10).await;
    let got = consumer.deliveries(5).await;
    let ids: Vec<&str> = got.iter().map(|d| d.delivery_id.as_str()).collect();
    assert!(
        consumer
            .ack_all(AckKind::Accept, &ids)
            .await
            .iter()
            .all(|s| *s == AckStatus::Ok as i32)
    );
    let mut client = topics(&server, &server.admin_token).await;
    let seek = |to| SeekSubscriptionRequest {
        workspace: String::new(),
        topic: "log".into(),
        name: "reader".into(),
        to: Some(to),
    };
    let sought = client
        .seek_subscription(seek(seek_subscription_request::To::Seq(seqs[2])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sought.backlog, 3,
        "messages from the third on are owed again"
    );
    let again: Vec<i64> = consumer.deliveries(3).await.iter().map(|d| d.seq).collect();
    assert_eq!(again, seqs[2..]);
    // By time: from the second message's publication on.
    let second: std::time::SystemTime = at(got[1].published_at.as_ref());
    let sought = client
        .seek_subscription(seek(seek_subscription_request::To::Time(
            prost_types::Timestamp::from(second),
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(
        sought.backlog >= 4,
        "at least the second to fifth: {sought:?}"
    );
    // The leases of the deliveries before the seek ended: their acks are expired.
    let old: Vec<&str> = got[2..].iter().map(|d| d.delivery_id.as_str()).collect();
    let statuses = consumer.ack_all(AckKind::Accept, &old).await;
    assert!(
        statuses.iter().all(|s| *s != AckStatus::Ok as i32),
        "{statuses:?}"
    );
    server.stop().await;
}

type TopicClient =
    berth_common::proto::topic_service_client::TopicServiceClient<berth_tests::Authed>;

async fn availability_of(client: &mut TopicClient) -> berth_common::proto::TopicAvailability {
    client
        .get_topic(GetTopicRequest {
            workspace: String::new(),
            slug: "svc".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .availability
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn availability_is_unknown_then_offline_then_online_with_its_evidence() {
    let server = TestServer::start().await;
    topic(&server, "svc", StorePolicy::Cache).await;
    subscription(&server, "svc", "worker", |_| {}).await;
    let mut client = topics(&server, &server.admin_token).await;
    let never = availability_of(&mut client).await;
    assert_eq!(never.state, Availability::Unknown as i32, "never pinged");
    assert_eq!(never.live_consumers, 0);

    let mut consumer = Consumer::admin(&server, "svc", "worker", 1).await;
    let pinged = client
        .ping(PingTopicRequest {
            workspace: String::new(),
            topic: "svc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pinged.live_consumers, 1);
    assert!(consumer.ping().await, "the live consumer is sent the ping");
    let silent = availability_of(&mut client).await;
    assert_eq!(
        silent.state,
        Availability::Offline as i32,
        "no pong yet: {silent:?}"
    );
    assert!(silent.last_ping_at.is_some());
    consumer.pong().await;
    let answered = eventually(
        "a pong to make the topic online",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move {
                let a = availability_of(&mut client).await;
                (a.state == Availability::Online as i32).then_some(a)
            }
        },
    )
    .await;
    assert!(at(answered.last_pong_at.as_ref()) >= at(answered.last_ping_at.as_ref()));
    assert_eq!(answered.live_consumers, 1);
    // A ping older than the unknown window tells nothing.
    query(&server.database_url, "UPDATE topics SET last_ping_at = now() - interval '3 minutes', last_pong_at = now() - interval '3 minutes' WHERE slug = 'svc'").await;
    assert_eq!(
        availability_of(&mut client).await.state,
        Availability::Unknown as i32
    );
    // An ack counts as a pong too.
    client
        .ping(PingTopicRequest {
            workspace: String::new(),
            topic: "svc".into(),
        })
        .await
        .unwrap();
    assert!(consumer.ping().await);
    publish(&server, "svc", vec![message(json!(1))]).await;
    let d = consumer.delivery().await;
    consumer.ack_all(AckKind::Accept, &[&d.delivery_id]).await;
    assert_eq!(
        availability_of(&mut client).await.state,
        Availability::Online as i32,
        "the ack answered the ping"
    );
    drop(consumer);
    eventually(
        "the closed consumer to leave the count",
        Duration::from_secs(30),
        || {
            let mut client = client.clone();
            async move { (availability_of(&mut client).await.live_consumers == 0).then_some(()) }
        },
    )
    .await;
    let listed = client
        .list_subscriptions(ListSubscriptionsRequest {
            workspace: String::new(),
            topic: "svc".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.subscriptions.len(), 1);
    let sub = client
        .get_subscription(GetSubscriptionRequest {
            workspace: String::new(),
            topic: "svc".into(),
            name: "worker".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((sub.backlog, sub.in_flight), (0, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_background_pings_live_topics_and_the_pass_prunes_old_ids_and_stale_consumers() {
    let server = TestServer::start_with(|c| {
        c.topics.ping_interval = Duration::from_secs(1);
    })
    .await;
    let url = server.database_url.clone();
    topic(&server, "svc", StorePolicy::Cache).await;
    subscription(&server, "svc", "worker", |_| {}).await;
    let mut consumer = Consumer::admin(&server, "svc", "worker", 10).await;
    assert!(
        consumer.ping().await,
        "the periodic pass pings a topic with a live consumer"
    );

    // Message ids: forgotten after the dedupe window once their message is gone; kept
    // while it is stored.
    topic(&server, "kept", StorePolicy::Store).await;
    let (gone, stored) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    publish(&server, "svc", vec![with_id(&gone, json!(1))]).await;
    publish(&server, "kept", vec![with_id(&stored, json!(2))]).await;
    let d = consumer.delivery().await;
    consumer.ack_all(AckKind::Accept, &[&d.delivery_id]).await;
    query(
        &url,
        "UPDATE topic_message_ids SET published_at = now() - interval '2 minutes'",
    )
    .await;
    let pool = connect_pool(&DbSettings {
        url: url.clone(),
        ca_cert: None,
        pool_size: 2,
    })
    .await
    .unwrap();
    let runner = Topics::new(pool, Arc::new(Hub::default())).with_settings(
        berth_core::topics::TopicSettings {
            dedupe_window: Duration::from_secs(60),
            ..Default::default()
        },
    );
    // A consumer row nobody has seen for an hour is stale; the live one is not.
    query(
        &url,
        "INSERT INTO topic_consumers (id, subscription_id, topic_id, replica_id, seen_at) \
         SELECT gen_random_uuid(), s.id, s.topic_id, gen_random_uuid(), now() - interval '1 hour' \
         FROM subscriptions s WHERE s.name = 'worker'",
    )
    .await;
    assert_eq!(count(&url, "SELECT count(*) FROM topic_consumers").await, 2);
    let (_, report) = runner.pass_once().await.unwrap();
    assert_eq!(report.ids_pruned, 1, "{report:?}");
    assert_eq!(report.stale_consumers, 1, "{report:?}");
    assert_eq!(
        count(&url, "SELECT count(*) FROM topic_consumers").await,
        1,
        "the live consumer stays"
    );
    publish(&server, "svc", vec![with_id(&gone, json!(3))]).await;
    let refused = try_publish(
        &server,
        &server.admin_token,
        "kept",
        vec![with_id(&stored, json!(4))],
    )
    .await;
    assert_code(refused, Code::AlreadyExists, "already published");
    server.stop().await;
}
