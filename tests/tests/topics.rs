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
use berth_core::topics;
use berth_tests::{fresh_database, query};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use uuid::Uuid;

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
    let seq = topics::publish_system(
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
    let first = topics::publish_system(&mut conn, workspace, "berth.work-requests", id, &content)
        .await
        .unwrap();
    assert!(first.is_some(), "the first publish stores the event");
    let again = topics::publish_system(&mut conn, workspace, "berth.work-requests", id, &content)
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
            topics::publish_system(conn, workspace, "berth.workers", rolled, &content).await?;
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
    let refused = topics::publish_system(
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
    let sub = topics::open_internal(&mut conn, workspace, "berth.work-requests", "rule-1")
        .await
        .unwrap();
    let again = topics::open_internal(&mut conn, workspace, "berth.work-requests", "rule-1")
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
            let taken = topics::take_internal(conn, sub, 10).await?;
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
                let taken = topics::take_internal(conn, sub, 2).await?;
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
                topics::accept_internal(conn, sub, &seqs).await?;
                Ok(())
            })
            .await
            .unwrap();
    });
    started.await.unwrap();
    let others = (*second)
        .transaction::<Vec<i64>, Error, _>(async |conn: &mut AsyncPgConnection| {
            let taken = topics::take_internal(conn, sub, 10).await?;
            let seqs: Vec<i64> = taken.iter().map(|m| m.seq).collect();
            topics::accept_internal(conn, sub, &seqs).await?;
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
        topics::take_internal(&mut conn, sub, 10)
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
    let a = topics::open_internal(&mut conn, workspace, "berth.workers", "a")
        .await
        .unwrap();
    let b = topics::open_internal(&mut conn, workspace, "berth.workers", "b")
        .await
        .unwrap();
    let publish = async |n: u32| -> i64 {
        let mut conn = pool.get().await.unwrap();
        topics::publish_system(
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
    topics::accept_internal(&mut conn, a, &[seq]).await.unwrap();
    assert!(stored(seq).await, "b still owes it");
    topics::accept_internal(&mut conn, b, &[seq]).await.unwrap();
    assert!(!stored(seq).await, "every subscription has accepted it");

    // cache: deleted at the first accept, with the other subscription's row.
    query(
        &url,
        "UPDATE topics SET store_policy = 'cache' WHERE slug = 'berth.workers'",
    )
    .await;
    let seq = publish(2).await;
    assert_eq!(owed(b).await, 1);
    topics::accept_internal(&mut conn, a, &[seq]).await.unwrap();
    assert!(!stored(seq).await, "the first accept deletes it");
    assert_eq!(
        owed(b).await,
        0,
        "and what the other subscription owed of it"
    );

    // Dropping a subscription drops what it owed; dropping it again is fine.
    let seq = publish(3).await;
    topics::drop_internal(&mut conn, a).await.unwrap();
    topics::drop_internal(&mut conn, a).await.unwrap();
    assert_eq!(owed(a).await, 0);
    assert_eq!(owed(b).await, 1);
    assert!(stored(seq).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_subscriptions_need_a_topic_that_stores() {
    let (url, pool) = database().await;
    let workspace = default_workspace(&url).await;
    let mut conn = pool.get().await.unwrap();
    let missing = topics::open_internal(&mut conn, workspace, "no-such-topic", "rule").await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    query(
        &url,
        &format!(
            "INSERT INTO topics (id, workspace_id, slug, store_policy) \
             VALUES (gen_random_uuid(), '{workspace}', 'live-only', 'disabled')"
        ),
    )
    .await;
    let disabled = topics::open_internal(&mut conn, workspace, "live-only", "rule").await;
    assert!(
        matches!(disabled, Err(Error::FailedPrecondition(_))),
        "{disabled:?}"
    );
    let bad_name = topics::open_internal(&mut conn, workspace, "berth.workers", "Bad Name").await;
    assert!(
        matches!(bad_name, Err(Error::InvalidArgument(_))),
        "{bad_name:?}"
    );
}
