//! Deliveries over real Subscribe streams on a real database: consumers sharing a
//! subscription (every message delivered, none leased to two at once, shown by the
//! leases themselves), an ack after the deadline answered `expired` and the message
//! delivered again, max deliveries and reject sending messages to the dead-letter topic
//! with their story, release waiting the backoff, renew extending the lease, flow control,
//! a `disabled` topic reaching one live consumer per subscription, a consumer on one
//! replica woken by a publish on another through NOTIFY, and a server restart losing no
//! unacked message.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use berth_common::proto::{
    AckItem, AckKind, AckStatus, Delivery, GetSubscriptionRequest, StorePolicy,
};
use berth_tests::topics::{Consumer, message, publish, subscription, topic, topics};
use berth_tests::{TestServer, eventually, query};
use serde_json::json;

fn seconds(n: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: n,
        nanos: 0,
    }
}

async fn count(server: &TestServer, sql: &str) -> i64 {
    query(&server.database_url, sql).await[0].get(0)
}

async fn backlog(server: &TestServer, topic: &str, name: &str) -> (u64, u64) {
    let sub = topics(server, &server.admin_token)
        .await
        .get_subscription(GetSubscriptionRequest {
            workspace: String::new(),
            topic: topic.to_owned(),
            name: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    (sub.backlog, sub.in_flight)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumers_share_a_subscription_and_no_message_is_leased_to_both() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "workers", |_| {}).await;
    // Each may take half: both must take part.
    let mut a = Consumer::admin(&server, "jobs", "workers", 150).await;
    let mut b = Consumer::admin(&server, "jobs", "workers", 150).await;
    assert_ne!(a.opened.consumer_id, b.opened.consumer_id);
    let total = 300;
    let seqs: BTreeSet<i64> = publish(
        &server,
        "jobs",
        (0..total).map(|n| message(json!({"n": n}))).collect(),
    )
    .await
    .into_iter()
    .collect();
    // Read both until every message has come to one of them.
    let mut got: BTreeMap<&str, Vec<Delivery>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    while seen.len() < seqs.len() {
        for (name, consumer) in [("a", &mut a), ("b", &mut b)] {
            if let Some(d) = consumer.delivery_within(Duration::from_millis(200)).await {
                seen.insert(d.seq);
                got.entry(name).or_default().push(d);
            }
        }
    }
    assert_eq!(seen, seqs, "every message was delivered");
    let of = |name: &str| -> BTreeSet<i64> {
        got.get(name)
            .map(|v| v.iter().map(|d| d.seq).collect())
            .unwrap_or_default()
    };
    assert!(of("a").is_disjoint(&of("b")), "no message went to both");
    assert_eq!(
        (of("a").len(), of("b").len()),
        (150, 150),
        "both took their share"
    );
    assert!(
        got.values().flatten().all(|d| d.delivery_count == 1),
        "each was delivered once"
    );
    // The leases say the same: each row leased once, to the consumer that got it, and
    // still running while nothing was acked.
    let leases = query(
        &server.database_url,
        "SELECT seq, consumer_id::text, delivery_count, leased_until > now() FROM subscription_messages",
    )
    .await;
    assert_eq!(leases.len(), seqs.len());
    for row in &leases {
        let seq: i64 = row.get(0);
        let holder: String = row.get(1);
        let expected = if of("a").contains(&seq) {
            &a.opened.consumer_id
        } else {
            &b.opened.consumer_id
        };
        assert_eq!(
            &holder, expected,
            "seq {seq} is leased to the consumer that got it"
        );
        assert_eq!(row.get::<_, i32>(2), 1);
        assert!(row.get::<_, bool>(3), "its lease runs");
    }
    for (name, consumer) in [("a", &mut a), ("b", &mut b)] {
        let ids: Vec<&str> = got
            .get(name)
            .map(|v| v.iter().map(|d| d.delivery_id.as_str()).collect())
            .unwrap_or_default();
        for chunk in ids.chunks(100) {
            let statuses = consumer.ack_all(AckKind::Accept, chunk).await;
            assert!(statuses.iter().all(|s| *s == AckStatus::Ok as i32));
        }
    }
    assert_eq!(backlog(&server, "jobs", "workers").await, (0, 0));
    assert_eq!(
        count(&server, "SELECT count(*) FROM topic_messages").await,
        0,
        "cache: all accepted, all gone"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ack_after_the_deadline_is_expired_and_the_message_is_delivered_again() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "slow", |r| {
        r.ack_deadline = Some(seconds(1))
    })
    .await;
    let mut consumer = Consumer::admin(&server, "jobs", "slow", 10).await;
    publish(&server, "jobs", vec![message(json!("late"))]).await;
    let first = consumer.delivery().await;
    assert_eq!(first.delivery_count, 1);
    // No ack: the lease runs out, and the message comes again with a higher count.
    let second = consumer.delivery().await;
    assert_eq!((second.seq, second.delivery_count), (first.seq, 2));
    assert_ne!(first.delivery_id, second.delivery_id);
    assert_eq!(
        consumer
            .ack_all(AckKind::Accept, &[&first.delivery_id])
            .await,
        [AckStatus::Expired as i32],
        "the first delivery's ack is too late"
    );
    assert_eq!(
        consumer
            .ack_all(AckKind::Accept, &[&second.delivery_id])
            .await,
        [AckStatus::Ok as i32]
    );
    // Unknown ids, and an ack of a settled delivery.
    assert_eq!(
        consumer
            .ack_all(
                AckKind::Accept,
                &["999999.1", "garbage", &second.delivery_id]
            )
            .await,
        [AckStatus::Unknown as i32; 3]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn max_deliveries_send_a_message_to_the_dead_letter_topic_with_its_story() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cacheall).await;
    topic(&server, "jobs.dead", StorePolicy::Store).await;
    subscription(&server, "jobs.dead", "inspect", |_| {}).await;
    subscription(&server, "jobs", "workers", |r| {
        r.max_deliveries = Some(2);
        r.backoff = vec![seconds(0)];
        r.ack_deadline = Some(seconds(1));
        r.dead_letter_topic = "jobs.dead".into();
    })
    .await;
    let mut dead = Consumer::admin(&server, "jobs.dead", "inspect", 10).await;
    let mut consumer = Consumer::admin(&server, "jobs", "workers", 10).await;

    // Released twice: the second release is the last allowed delivery.
    let seqs = publish(&server, "jobs", vec![message(json!({"poison": 1}))]).await;
    for count in 1..=2 {
        let d = consumer.delivery().await;
        assert_eq!((d.seq, d.delivery_count), (seqs[0], count));
        assert_eq!(
            consumer.ack_all(AckKind::Release, &[&d.delivery_id]).await,
            [AckStatus::Ok as i32]
        );
    }
    let letter = dead.delivery().await;
    assert_eq!(letter.content, r#"{"poison":1}"#);
    assert_eq!(letter.properties["dead_letter_from_topic"], "jobs");
    assert_eq!(letter.properties["dead_letter_seq"], seqs[0].to_string());
    assert_eq!(letter.properties["dead_letter_reason"], "max-deliveries");
    assert_eq!(letter.properties["delivery_count"], "2");
    assert_eq!(
        letter.producer, "admin",
        "the dead letter keeps its producer"
    );

    // Never acked: two leases run out, and the next claim (or the pass) sends it on.
    let seqs = publish(&server, "jobs", vec![message(json!({"silent": 2}))]).await;
    let d1 = consumer.delivery().await;
    let d2 = consumer.delivery().await;
    assert_eq!(
        (d1.seq, d1.delivery_count, d2.seq, d2.delivery_count),
        (seqs[0], 1, seqs[0], 2)
    );
    let letter = dead.delivery().await;
    assert_eq!(letter.properties["dead_letter_seq"], seqs[0].to_string());
    assert_eq!(letter.properties["dead_letter_reason"], "max-deliveries");
    assert!(
        consumer
            .delivery_within(Duration::from_secs(2))
            .await
            .is_none(),
        "not delivered a third time"
    );
    assert_eq!(backlog(&server, "jobs", "workers").await, (0, 0));
    assert_eq!(
        count(&server, "SELECT count(*) FROM topic_messages m JOIN topics t ON t.id = m.topic_id WHERE t.slug = 'jobs'").await,
        0,
        "cacheall: nobody owes them, they are gone"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_sends_a_message_to_the_dead_letters_at_once_or_drops_it_without() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Store).await;
    topic(&server, "jobs.dead", StorePolicy::Store).await;
    subscription(&server, "jobs.dead", "inspect", |_| {}).await;
    subscription(&server, "jobs", "careful", |r| {
        r.dead_letter_topic = "jobs.dead".into()
    })
    .await;
    subscription(&server, "jobs", "careless", |_| {}).await;
    let mut dead = Consumer::admin(&server, "jobs.dead", "inspect", 10).await;
    let mut careful = Consumer::admin(&server, "jobs", "careful", 10).await;
    let mut careless = Consumer::admin(&server, "jobs", "careless", 10).await;
    let seqs = publish(&server, "jobs", vec![message(json!("bad"))]).await;
    let d = careful.delivery().await;
    assert_eq!(
        careful.ack_all(AckKind::Reject, &[&d.delivery_id]).await,
        [AckStatus::Ok as i32]
    );
    let letter = dead.delivery().await;
    assert_eq!(letter.properties["dead_letter_reason"], "rejected");
    assert_eq!(letter.properties["dead_letter_seq"], seqs[0].to_string());
    assert_eq!(letter.properties["delivery_count"], "1");
    let d = careless.delivery().await;
    assert_eq!(
        careless.ack_all(AckKind::Reject, &[&d.delivery_id]).await,
        [AckStatus::Ok as i32]
    );
    assert_eq!(
        backlog(&server, "jobs", "careless").await,
        (0, 0),
        "dropped"
    );
    assert!(
        dead.delivery_within(Duration::from_secs(1)).await.is_none(),
        "one dead letter only"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn release_waits_the_backoff_and_renew_extends_the_lease() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "workers", |r| {
        r.backoff = vec![seconds(30)]
    })
    .await;
    let mut consumer = Consumer::admin(&server, "jobs", "workers", 10).await;
    let seqs = publish(&server, "jobs", vec![message(json!(1)), message(json!(2))]).await;
    let first = consumer.delivery().await;
    let second = consumer.delivery().await;
    // A release without a delay still waits backoff[1] = 30 s.
    assert_eq!(
        consumer
            .ack_all(AckKind::Release, &[&first.delivery_id])
            .await,
        [AckStatus::Ok as i32]
    );
    let wait: f64 = query(
        &server.database_url,
        &format!("SELECT extract(epoch FROM visible_at - now())::float8 FROM subscription_messages WHERE seq = {}", seqs[0]),
    )
    .await[0]
        .get(0);
    assert!(wait > 25.0, "released for the backoff, not at once: {wait}");
    // A release asking for longer waits longer.
    let renew = |extend: i64| AckItem {
        delivery_id: second.delivery_id.clone(),
        kind: AckKind::Renew as i32,
        extend: Some(seconds(extend)),
        ..Default::default()
    };
    let lease = async || -> f64 {
        query(
            &server.database_url,
            &format!("SELECT extract(epoch FROM leased_until - now())::float8 FROM subscription_messages WHERE seq = {}", seqs[1]),
        )
        .await[0]
            .get(0)
    };
    assert!(lease().await < 31.0);
    let results = consumer.ack(vec![renew(600)]).await;
    assert_eq!(results[0].status, AckStatus::Ok as i32);
    assert!(
        lease().await > 500.0,
        "the lease was extended to ten minutes"
    );
    assert!(
        consumer
            .delivery_within(Duration::from_secs(1))
            .await
            .is_none(),
        "released one waits"
    );
    assert_eq!(backlog(&server, "jobs", "workers").await, (2, 1));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credit_and_max_in_flight_bound_what_a_consumer_holds() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "few", |r| r.max_in_flight = 2).await;
    subscription(&server, "jobs", "metered", |_| {}).await;
    publish(&server, "jobs", (0..6).map(|n| message(json!(n))).collect()).await;
    // Three credits: three deliveries, then none until more credit comes.
    let mut metered = Consumer::admin(&server, "jobs", "metered", 3).await;
    assert_eq!(metered.deliveries(3).await.len(), 3);
    assert!(
        metered
            .delivery_within(Duration::from_millis(500))
            .await
            .is_none(),
        "no credit left"
    );
    metered.credit(2).await;
    assert_eq!(metered.deliveries(2).await.len(), 2);
    assert!(
        metered
            .delivery_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    // Plenty of credit, but at most two unacked at once.
    let mut few = Consumer::admin(&server, "jobs", "few", 100).await;
    let held = few.deliveries(2).await;
    assert!(
        few.delivery_within(Duration::from_millis(500))
            .await
            .is_none(),
        "max_in_flight holds it back"
    );
    assert_eq!(
        few.ack_all(AckKind::Accept, &[&held[0].delivery_id]).await,
        [AckStatus::Ok as i32]
    );
    assert_eq!(few.deliveries(1).await.len(), 1, "an ack makes room");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_topic_reaches_one_live_consumer_per_subscription_and_stores_nothing() {
    let server = TestServer::start().await;
    topic(&server, "live", StorePolicy::Disabled).await;
    subscription(&server, "live", "shared", |_| {}).await;
    subscription(&server, "live", "solo", |_| {}).await;
    subscription(&server, "live", "nobody", |_| {}).await;
    let mut shared_a = Consumer::admin(&server, "live", "shared", 0).await;
    let mut shared_b = Consumer::admin(&server, "live", "shared", 0).await;
    let mut solo = Consumer::admin(&server, "live", "solo", 0).await;
    let seqs = publish(
        &server,
        "live",
        (0..10).map(|n| message(json!(n))).collect(),
    )
    .await;
    let got: Vec<i64> = solo.deliveries(10).await.iter().map(|d| d.seq).collect();
    assert_eq!(
        got, seqs,
        "the solo consumer gets each, in order, without credit"
    );
    let mut shared = Vec::new();
    while shared.len() < 10 {
        for consumer in [&mut shared_a, &mut shared_b] {
            if let Some(d) = consumer.delivery_within(Duration::from_millis(200)).await {
                assert_eq!(d.delivery_id, "", "nothing to ack");
                shared.push(d.seq);
            }
        }
    }
    for consumer in [&mut shared_a, &mut shared_b] {
        assert!(
            consumer
                .delivery_within(Duration::from_millis(300))
                .await
                .is_none()
        );
    }
    shared.sort_unstable();
    assert_eq!(
        shared, seqs,
        "each message reached exactly one of the shared consumers"
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM topic_messages").await,
        0
    );
    assert_eq!(
        count(&server, "SELECT count(*) FROM subscription_messages").await,
        0
    );
    // Too large for a NOTIFY.
    let big = berth_tests::topics::try_publish(
        &server,
        &server.admin_token,
        "live",
        vec![message(json!("z".repeat(8000)))],
    )
    .await;
    berth_tests::assert_code(big, tonic::Code::InvalidArgument, "7500");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_on_one_replica_is_woken_by_a_publish_on_another() {
    // A poll a minute away: only a NOTIFY can deliver within the bound below.
    let slow_poll = |c: &mut berth_server::app::config::Config| {
        c.topics.poll_interval = Duration::from_secs(60);
    };
    let a = TestServer::start_with(slow_poll).await;
    let b = a.replica_with(slow_poll).await;
    topic(&a, "events", StorePolicy::Cache).await;
    subscription(&a, "events", "watch", |_| {}).await;
    let mut consumer = Consumer::admin(&a, "events", "watch", 10).await;
    for n in 0..3 {
        let started = tokio::time::Instant::now();
        let seqs = publish(&b, "events", vec![message(json!({"n": n}))]).await;
        let d = consumer
            .delivery_within(Duration::from_secs(20))
            .await
            .expect("the publish on replica B reaches the consumer on replica A");
        assert_eq!(d.seq, seqs[0]);
        assert!(started.elapsed() < Duration::from_secs(20));
        consumer.ack_all(AckKind::Accept, &[&d.delivery_id]).await;
    }
    // A disabled topic's message goes through NOTIFY too, from B to A's consumer.
    topic(&a, "live", StorePolicy::Disabled).await;
    subscription(&a, "live", "watch", |_| {}).await;
    let mut live = Consumer::admin(&a, "live", "watch", 0).await;
    let seqs = publish(&b, "live", vec![message(json!("now"))]).await;
    assert_eq!(live.delivery().await.seq, seqs[0]);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unacked_messages_survive_a_server_restart_and_are_delivered_again() {
    let mut server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "workers", |r| {
        r.ack_deadline = Some(seconds(2))
    })
    .await;
    let seqs: BTreeSet<i64> = publish(
        &server,
        "jobs",
        (0..20).map(|n| message(json!(n))).collect(),
    )
    .await
    .into_iter()
    .collect();
    let mut consumer = Consumer::admin(&server, "jobs", "workers", 100).await;
    let before: Vec<Delivery> = consumer.deliveries(20).await;
    // Five accepted before the restart; the rest are leased and never acked.
    let accepted: Vec<&str> = before[..5].iter().map(|d| d.delivery_id.as_str()).collect();
    assert!(
        consumer
            .ack_all(AckKind::Accept, &accepted)
            .await
            .iter()
            .all(|s| *s == AckStatus::Ok as i32)
    );
    drop(consumer);
    server.restart().await;
    // The old process's consumer row ends with it.
    assert_eq!(
        count(&server, "SELECT count(*) FROM topic_consumers").await,
        0
    );
    let mut consumer = Consumer::admin(&server, "jobs", "workers", 100).await;
    let again = consumer.deliveries(15).await;
    let redelivered: BTreeSet<i64> = again.iter().map(|d| d.seq).collect();
    let expected: BTreeSet<i64> = before[5..].iter().map(|d| d.seq).collect();
    assert_eq!(
        redelivered, expected,
        "every unacked message comes again, no accepted one"
    );
    assert!(again.iter().all(|d| d.delivery_count == 2));
    assert!(expected.is_subset(&seqs));
    let ids: Vec<&str> = again.iter().map(|d| d.delivery_id.as_str()).collect();
    assert!(
        consumer
            .ack_all(AckKind::Accept, &ids)
            .await
            .iter()
            .all(|s| *s == AckStatus::Ok as i32)
    );
    assert_eq!(backlog(&server, "jobs", "workers").await, (0, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stream_releases_nothing_and_deletes_its_consumer_row() {
    let server = TestServer::start().await;
    topic(&server, "jobs", StorePolicy::Cache).await;
    subscription(&server, "jobs", "workers", |_| {}).await;
    let mut consumer = Consumer::admin(&server, "jobs", "workers", 10).await;
    publish(&server, "jobs", vec![message(json!(1))]).await;
    let held = consumer.delivery().await;
    assert_eq!(
        count(&server, "SELECT count(*) FROM topic_consumers").await,
        1
    );
    drop(consumer);
    eventually(
        "the closed stream's consumer row to go",
        Duration::from_secs(30),
        || async {
            (count(&server, "SELECT count(*) FROM topic_consumers").await == 0).then_some(())
        },
    )
    .await;
    // Its lease is untouched: another consumer does not get the message before it runs out.
    let mut other = Consumer::admin(&server, "jobs", "workers", 10).await;
    assert!(
        other
            .delivery_within(Duration::from_secs(1))
            .await
            .is_none()
    );
    let leased = query(
        &server.database_url,
        &format!(
            "SELECT delivery_count, leased_until > now() FROM subscription_messages WHERE seq = {}",
            held.seq
        ),
    )
    .await;
    assert_eq!(leased[0].get::<_, i32>(0), 1);
    assert!(leased[0].get::<_, bool>(1), "still leased");
    // An ack of the old delivery on a new stream still applies while its lease runs.
    assert_eq!(
        other.ack_all(AckKind::Accept, &[&held.delivery_id]).await,
        [AckStatus::Ok as i32]
    );
    server.stop().await;
}
