//! `topics`: how many messages a second go publish → deliver → ack, how long one takes,
//! and how that compares with the smallest write PostgreSQL can do.
//!
//! A public topic (store policy `cache`, the default: each message is deleted at its first ack)
//! with one durable subscription; 4 publishers and 4 consumers sharing that
//! subscription, each consumer a real `Subscribe` stream with credit, acking what it got
//! in batches as it goes:
//!
//! 1. **Peak.** The publishers publish in a closed loop, batches of [`PEAK_BATCH`]
//!    messages per call, for a fixed time. Throughput is messages acked (ack answered
//!    `OK`) divided by the time from the first publish until the last ack; every message
//!    must be delivered and acked (a count that falls short is an error, not a figure).
//! 2. **Half load.** The publishers paced to half of that rate together, one message per
//!    call, in an open loop (each call sent on time, whether or not the earlier ones have
//!    returned): latency from just before the publish call until a consumer holds the
//!    delivery (publish → deliver), and until its ack is answered (publish → ack), p50 /
//!    p99. At saturation latency only measures the queue; at half load it measures the
//!    path.
//! 3. **pgbench.** On the same cluster, in a separate database, `pgbench` runs a one-row
//!    `UPDATE` with as many clients as there are publishers, for the same time: messages a
//!    second ÷ pgbench TPS says how close the topic path comes to that bound (each
//!    message costs an insert, a claim, an ack and a delete, batched).
//!
//! Deliveries seen twice (redelivered after an expired lease) are counted and printed; at
//! these sizes with a 30 s ack deadline there should be none.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_common::client::BearerAuth;
use berth_common::proto::topic_service_client::TopicServiceClient;
use berth_common::proto::{
    AckItem, AckKind, AckStatus, CreateSubscriptionRequest, CreateTopicRequest, PublishMessage,
    PublishRequest, Role, StartKind, SubscribeAck, SubscribeCredit, SubscribeOpen,
    SubscribeRequest, SubscriptionStart, subscribe_request, subscribe_response,
};
use serde_json::json;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use crate::report::{Report, ms};
use crate::scenarios::Options;
use crate::scenarios::noop::pgbench;
use crate::stack::{Stack, StackOptions, percentile, tail};

/// Publishers, and consumers on the one subscription.
const PUBLISHERS: usize = 4;
const CONSUMERS: usize = 4;
/// Messages per publish call at peak.
const PEAK_BATCH: usize = 50;
/// Credit each consumer keeps granted.
const CREDIT: u32 = 500;
/// A consumer sends its acks when this many are waiting, or every [`ACK_FLUSH`].
const ACK_BATCH: usize = 100;
const ACK_FLUSH: Duration = Duration::from_millis(2);
/// Publish calls one publisher has open at once at half load.
const MAX_OPEN_CALLS: usize = 256;
/// Goals (BENCHMARKS.md).
const GOAL_PER_SECOND: f64 = 5000.0;
const GOAL_P99_MS: f64 = 20.0;

type Topics =
    TopicServiceClient<tonic::service::interceptor::InterceptedService<Channel, BearerAuth>>;

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let duration = if opts.quick {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(15)
    };
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, duration).await.map_err(|e| {
        let log = tail(&stack.dir.path().join("server.log"), 20);
        e.context(format!("the server's log ends:\n{log}"))
    });
    stack.stop().await?;
    result
}

/// What the consumers saw, shared by them.
#[derive(Default)]
struct Seen {
    /// message id → (publish started, delivered, ack answered), in µs since the base.
    times: HashMap<String, (u64, Option<u64>, Option<u64>)>,
    /// Deliveries of a message already delivered once.
    redelivered: u64,
    /// Acks answered other than OK.
    not_ok: u64,
}

struct Phase {
    /// Messages published (the publish call returned them).
    published: u64,
    /// Seconds from the first publish until the last ack.
    span: f64,
    deliver_ms: Vec<f64>,
    ack_ms: Vec<f64>,
    redelivered: u64,
    not_ok: u64,
}

async fn measure(stack: &Stack, duration: Duration) -> anyhow::Result<Report> {
    let token = stack.create_token(Role::User, "bench-topics").await?;
    stack.make_contributor("default", "bench-topics").await?;
    let channel = stack.channel().await?;
    let topics: Topics =
        TopicServiceClient::with_interceptor(channel.clone(), BearerAuth::new(&token));

    eprintln!(
        "  peak: {PUBLISHERS} publishers (batches of {PEAK_BATCH}) and {CONSUMERS} consumers for {duration:?}"
    );
    let peak = phase(&topics, "bench-peak", duration, None).await?;
    let peak_rate = peak.published as f64 / peak.span;
    let half_rate = (peak_rate / 2.0).max(1.0);
    eprintln!("  half load: {half_rate:.0} messages/s, one per call, for {duration:?}");
    let half = phase(&topics, "bench-half", duration, Some(half_rate)).await?;
    let half_rate_achieved = half.published as f64 / half.span;

    eprintln!("  pgbench: {PUBLISHERS} clients for {duration:?}");
    let pgbench_tps = pgbench(stack, PUBLISHERS, duration).await?;

    let mut deliver = half.deliver_ms.clone();
    let mut acked = half.ack_ms.clone();
    deliver.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);
    let mut peak_deliver = peak.deliver_ms.clone();
    peak_deliver.sort_by(f64::total_cmp);
    let p99 = percentile(&deliver, 99.0);
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let rows = vec![
        (
            "peak publish → deliver → ack".to_owned(),
            format!(
                "{peak_rate:.0} messages/s ({} in {:.2} s; goal ≥ {GOAL_PER_SECOND:.0}/s: {})",
                peak.published,
                peak.span,
                mark(peak_rate >= GOAL_PER_SECOND)
            ),
        ),
        (
            "peak: publish → deliver p50 / p99".to_owned(),
            format!(
                "{} / {}",
                ms(percentile(&peak_deliver, 50.0)),
                ms(percentile(&peak_deliver, 99.0))
            ),
        ),
        (
            "half load".to_owned(),
            format!("{half_rate_achieved:.0} messages/s achieved (paced at {half_rate:.0}/s)"),
        ),
        (
            "half load: publish → deliver p50 / p99".to_owned(),
            format!(
                "{} / {} (goal p99 ≤ {}: {})",
                ms(percentile(&deliver, 50.0)),
                ms(p99),
                ms(GOAL_P99_MS),
                mark(p99 <= GOAL_P99_MS)
            ),
        ),
        (
            "half load: publish → ack answered p50 / p99".to_owned(),
            format!(
                "{} / {}",
                ms(percentile(&acked, 50.0)),
                ms(percentile(&acked, 99.0))
            ),
        ),
        (
            "pgbench one-row UPDATE".to_owned(),
            format!("{pgbench_tps:.0} TPS ({PUBLISHERS} clients)"),
        ),
        (
            "ratio messages/s ÷ pgbench TPS".to_owned(),
            format!("{:.2}", peak_rate / pgbench_tps),
        ),
        (
            "redelivered / acks not OK".to_owned(),
            format!(
                "{} / {}",
                peak.redelivered + half.redelivered,
                peak.not_ok + half.not_ok
            ),
        ),
    ];
    Ok(Report {
        scenario: "topics".into(),
        rows,
        json: json!({
            "publishers": PUBLISHERS,
            "consumers": CONSUMERS,
            "duration_seconds": duration.as_secs_f64(),
            "peak": {
                "messages": peak.published,
                "throughput_per_second": peak_rate,
                "deliver_latency_ms": {
                    "p50": percentile(&peak_deliver, 50.0),
                    "p99": percentile(&peak_deliver, 99.0),
                },
            },
            "half_load": {
                "paced_per_second": half_rate,
                "achieved_per_second": half_rate_achieved,
                "deliver_latency_ms": { "p50": percentile(&deliver, 50.0), "p99": p99 },
                "ack_latency_ms": {
                    "p50": percentile(&acked, 50.0),
                    "p99": percentile(&acked, 99.0),
                },
            },
            "pgbench_tps": pgbench_tps,
            "ratio_to_pgbench": peak_rate / pgbench_tps,
            "redelivered": peak.redelivered + half.redelivered,
            "acks_not_ok": peak.not_ok + half.not_ok,
        }),
    })
}

/// One phase on a fresh topic: consumers first, then the publishers for `duration`
/// (closed loop when `rate` is `None`, else paced to `rate` messages a second in all),
/// then waiting until every published message is acked.
async fn phase(
    topics: &Topics,
    slug: &str,
    duration: Duration,
    rate: Option<f64>,
) -> anyhow::Result<Phase> {
    topics
        .clone()
        .create_topic(CreateTopicRequest {
            slug: slug.into(),
            public: true,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create the topic {slug}"))?;
    topics
        .clone()
        .create_subscription(CreateSubscriptionRequest {
            topic: slug.into(),
            name: "bench".into(),
            start: Some(SubscriptionStart {
                kind: StartKind::New as i32,
                ..Default::default()
            }),
            max_in_flight: CREDIT * 2,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create the subscription of {slug}"))?;

    let base = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let acked = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        consumers.push(tokio::spawn(consume(
            topics.clone(),
            slug.to_owned(),
            base,
            seen.clone(),
            acked.clone(),
        )));
    }
    // Let the streams open before the first message.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let published = Arc::new(AtomicU64::new(0));
    let first_publish = Instant::now();
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        publishers.push(tokio::spawn(publish(
            topics.clone(),
            slug.to_owned(),
            p,
            duration,
            rate.map(|r| r / PUBLISHERS as f64),
            base,
            seen.clone(),
            published.clone(),
        )));
    }
    for publisher in publishers {
        publisher.await.context("a publisher panicked")??;
    }
    let total = published.load(Ordering::SeqCst);
    let mut last = acked.load(Ordering::SeqCst);
    let mut last_change = Instant::now();
    while acked.load(Ordering::SeqCst) < total {
        if let Some(i) = consumers.iter().position(|c| c.is_finished()) {
            let why = match consumers.swap_remove(i).await {
                Ok(Ok(())) => "it returned".to_owned(),
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => e.to_string(),
            };
            bail!("a consumer of {slug} ended before every message was acked: {why}");
        }
        let now = acked.load(Ordering::SeqCst);
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(30) {
            bail!("only {now} of {total} messages on {slug} were acked; nothing moved for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let span = first_publish.elapsed().as_secs_f64();
    for consumer in consumers {
        consumer.abort();
    }
    let seen = seen.lock().await;
    let mut deliver_ms = Vec::with_capacity(seen.times.len());
    let mut ack_ms = Vec::with_capacity(seen.times.len());
    for (sent, delivered, acked) in seen.times.values() {
        if let Some(d) = delivered {
            deliver_ms.push(d.saturating_sub(*sent) as f64 / 1000.0);
        }
        if let Some(a) = acked {
            ack_ms.push(a.saturating_sub(*sent) as f64 / 1000.0);
        }
    }
    if (deliver_ms.len() as u64) < total {
        bail!(
            "{} of {total} messages on {slug} were delivered",
            deliver_ms.len()
        );
    }
    Ok(Phase {
        published: total,
        span,
        deliver_ms,
        ack_ms,
        redelivered: seen.redelivered,
        not_ok: seen.not_ok,
    })
}

fn micros(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

#[expect(clippy::too_many_arguments, reason = "one publisher's whole setting")]
async fn publish(
    topics: Topics,
    slug: String,
    publisher: usize,
    duration: Duration,
    rate: Option<f64>,
    base: Instant,
    seen: Arc<Mutex<Seen>>,
    published: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let Some(rate) = rate else {
        // Closed loop: the next batch once the last one returned.
        let start = Instant::now();
        let mut n: u64 = 0;
        while start.elapsed() < duration {
            publish_one(&topics, &slug, publisher, n, PEAK_BATCH, base, &seen).await?;
            published.fetch_add(PEAK_BATCH as u64, Ordering::SeqCst);
            n += 1;
        }
        return Ok(());
    };
    // Open loop: one message every period, each call on its own, however long the
    // calls before it take (so a slow call delays no later one, and latency is not
    // hidden by waiting), at most MAX_OPEN_CALLS at once.
    let period = Duration::from_secs_f64(1.0 / rate);
    let calls = Arc::new(tokio::sync::Semaphore::new(MAX_OPEN_CALLS));
    let mut running = tokio::task::JoinSet::new();
    let start = tokio::time::Instant::now();
    let mut next = start;
    let mut n: u64 = 0;
    while next.duration_since(start) < duration {
        tokio::time::sleep_until(next).await;
        next += period;
        let permit = calls
            .clone()
            .acquire_owned()
            .await
            .context("the publish calls' semaphore closed")?;
        let (topics, slug, seen, published) = (
            topics.clone(),
            slug.clone(),
            seen.clone(),
            published.clone(),
        );
        running.spawn(async move {
            let result = publish_one(&topics, &slug, publisher, n, 1, base, &seen).await;
            drop(permit);
            if result.is_ok() {
                published.fetch_add(1, Ordering::SeqCst);
            }
            result
        });
        n += 1;
        while let Some(done) = running.try_join_next() {
            done.context("a publish call panicked")??;
        }
    }
    while let Some(done) = running.join_next().await {
        done.context("a publish call panicked")??;
    }
    Ok(())
}

/// One publish call of `batch` new messages; their send time is noted first.
async fn publish_one(
    topics: &Topics,
    slug: &str,
    publisher: usize,
    n: u64,
    batch: usize,
    base: Instant,
    seen: &Mutex<Seen>,
) -> anyhow::Result<()> {
    let sent = micros(base);
    let ids: Vec<String> = (0..batch)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    {
        let mut seen = seen.lock().await;
        for id in &ids {
            seen.times.insert(id.clone(), (sent, None, None));
        }
    }
    let messages = ids
        .iter()
        .map(|id| PublishMessage {
            message_id: id.clone(),
            content: json!({"publisher": publisher, "n": n}).to_string(),
            ..Default::default()
        })
        .collect();
    topics
        .clone()
        .publish(PublishRequest {
            topic: slug.to_owned(),
            messages,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot publish on {slug}"))?;
    Ok(())
}

async fn consume(
    mut topics: Topics,
    slug: String,
    base: Instant,
    seen: Arc<Mutex<Seen>>,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    let frame = |f| SubscribeRequest { frame: Some(f) };
    tx.send(frame(subscribe_request::Frame::Open(SubscribeOpen {
        topic: slug.clone(),
        subscription: "bench".into(),
        initial_credit: CREDIT,
        ..Default::default()
    })))
    .ok();
    let mut responses = topics
        .subscribe(UnboundedReceiverStream::new(rx))
        .await
        .with_context(|| format!("cannot subscribe to {slug}"))?
        .into_inner();
    // delivery id → message id, until its ack is answered.
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut to_ack: Vec<String> = Vec::new();
    let mut flush = tokio::time::interval(ACK_FLUSH);
    loop {
        tokio::select! {
            frame_in = responses.next() => {
                let Some(frame_in) = frame_in else { bail!("the stream of {slug} ended") };
                let frame_in = frame_in.with_context(|| format!("the stream of {slug} failed"))?;
                match frame_in.frame {
                    Some(subscribe_response::Frame::Delivery(d)) => {
                        let now = micros(base);
                        let mut seen = seen.lock().await;
                        if let Some(entry) = seen.times.get_mut(&d.message_id) {
                            if entry.1.is_some() {
                                seen.redelivered += 1;
                            } else {
                                entry.1 = Some(now);
                            }
                        }
                        drop(seen);
                        pending.insert(d.delivery_id.clone(), d.message_id);
                        to_ack.push(d.delivery_id);
                    }
                    Some(subscribe_response::Frame::AckResult(r)) => {
                        let now = micros(base);
                        let message = pending.remove(&r.delivery_id);
                        let mut seen = seen.lock().await;
                        if r.status == AckStatus::Ok as i32 {
                            if let Some(entry) = message.and_then(|m| seen.times.get_mut(&m)) {
                                entry.2 = Some(now);
                            }
                            acked.fetch_add(1, Ordering::SeqCst);
                        } else {
                            seen.not_ok += 1;
                        }
                    }
                    Some(subscribe_response::Frame::Ping(_)) => {
                        tx.send(frame(subscribe_request::Frame::Pong(Default::default()))).ok();
                    }
                    _ => {}
                }
                if to_ack.len() >= ACK_BATCH {
                    send_acks(&tx, &mut to_ack);
                }
            }
            _ = flush.tick() => {
                if !to_ack.is_empty() {
                    send_acks(&tx, &mut to_ack);
                }
            }
        }
    }
}

/// Sends the waiting acks and grants as much credit again.
fn send_acks(tx: &mpsc::UnboundedSender<SubscribeRequest>, to_ack: &mut Vec<String>) {
    let n = u32::try_from(to_ack.len()).unwrap_or(u32::MAX);
    let acks = to_ack
        .drain(..)
        .map(|delivery_id| AckItem {
            delivery_id,
            kind: AckKind::Accept as i32,
            ..Default::default()
        })
        .collect();
    tx.send(SubscribeRequest {
        frame: Some(subscribe_request::Frame::Ack(SubscribeAck { acks })),
    })
    .ok();
    tx.send(SubscribeRequest {
        frame: Some(subscribe_request::Frame::Credit(SubscribeCredit { n })),
    })
    .ok();
}
