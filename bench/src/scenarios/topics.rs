//! `topics`: publish → deliver → ack throughput and latency, against pgbench.
//!
//! One topic (policy `cache`: every accept also deletes the message) with one
//! subscription shared by 4 consumer streams; 4 publishers publish batches of JSON
//! messages carrying the instant they were sent. Each consumer keeps credit ahead of what
//! it received and accepts what it got in batches (every 64 deliveries or 5 ms).
//!
//! 1. **Peak**: the publishers publish as fast as they can for the duration; the
//!    throughput is the messages accepted (acks answered `ok`) per second over that
//!    window. Goal: ≥ 5,000 messages/s.
//! 2. **Half load**: the publishers publish at half that rate in small batches for the
//!    same time; the latency is from just before the publish call to the delivery
//!    reaching a consumer, p50 and p99. Goal: p99 ≤ 20 ms.
//! 3. **pgbench** on the same cluster, in its own database: a one-row `UPDATE` with as
//!    many clients as publishers and consumers together, for the same time.
//!
//! Every message published must be accepted once the publishers stop (checked: the
//! subscription's backlog drains to zero); a message accepted twice would show as more
//! `ok` acks than messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_common::client::BearerAuth;
use berth_common::proto::topic_service_client::TopicServiceClient;
use berth_common::proto::{
    AckItem, AckKind, AckStatus, CreateSubscriptionRequest, CreateTopicRequest,
    GetSubscriptionRequest, PublishMessage, PublishRequest, StorePolicy, SubscribeAck,
    SubscribeCredit, SubscribeOpen, SubscribeRequest, subscribe_request, subscribe_response,
};
use serde_json::json;
use tokio::sync::{Mutex, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::report::{Report, ms};
use crate::scenarios::Options;
use crate::scenarios::noop::pgbench;
use crate::stack::{Authed, Stack, StackOptions, percentile};

/// Goals.
const GOAL_THROUGHPUT: f64 = 5000.0;
const GOAL_P99_MS: f64 = 20.0;
/// The topic and subscription.
const TOPIC: &str = "bench";
const SUBSCRIPTION: &str = "workers";
/// Messages per publish at peak, and at half load.
const PEAK_BATCH: usize = 100;
const HALF_BATCH: usize = 5;
/// How many deliveries a consumer gathers before it accepts them, and how long at most.
const ACK_BATCH: usize = 64;
const ACK_EVERY: Duration = Duration::from_millis(5);
/// Credit a consumer keeps ahead of what it received.
const CREDIT: u32 = 1000;

/// Sizes of one run.
struct Sizes {
    publishers: usize,
    consumers: usize,
    duration: Duration,
}

/// What the consumers have seen, shared by them.
#[derive(Default)]
struct Seen {
    delivered: AtomicU64,
    accepted: AtomicU64,
    not_ok: AtomicU64,
    /// Publish-to-delivery latencies (ms), while `measuring`.
    latencies: Mutex<Vec<f64>>,
    measuring: std::sync::atomic::AtomicBool,
}

fn client(channel: &Channel, token: &str) -> TopicServiceClient<Authed> {
    TopicServiceClient::with_interceptor(channel.clone(), BearerAuth::new(token))
}

/// Runs the scenario.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    let sizes = Sizes {
        publishers: 4,
        consumers: 4,
        duration: if opts.quick {
            Duration::from_secs(5)
        } else {
            opts.duration.unwrap_or(Duration::from_secs(20))
        },
    };
    let stack = Stack::start(StackOptions::default()).await?;
    let result = measure(&stack, &sizes).await;
    stack.stop().await?;
    result
}

/// One consumer stream until `stop`: records latencies, accepts in batches, tops credit
/// up.
async fn consume(
    channel: Channel,
    token: String,
    base: Instant,
    seen: Arc<Seen>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (frames, rx) = mpsc::channel(1024);
    frames
        .send(SubscribeRequest {
            frame: Some(subscribe_request::Frame::Open(SubscribeOpen {
                workspace: String::new(),
                topic: TOPIC.into(),
                subscription: SUBSCRIPTION.into(),
                initial_credit: CREDIT,
            })),
        })
        .await
        .context("cannot open a consumer")?;
    let mut stream = client(&channel, &token)
        .subscribe(ReceiverStream::new(rx))
        .await
        .context("cannot subscribe")?
        .into_inner();
    let mut pending: Vec<String> = Vec::with_capacity(ACK_BATCH);
    let mut tick = tokio::time::interval(ACK_EVERY);
    let flush = async |pending: &mut Vec<String>| -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let n = u32::try_from(pending.len()).unwrap_or(u32::MAX);
        let acks = pending
            .drain(..)
            .map(|delivery_id| AckItem {
                delivery_id,
                kind: AckKind::Accept as i32,
                ..Default::default()
            })
            .collect();
        frames
            .send(SubscribeRequest {
                frame: Some(subscribe_request::Frame::Ack(SubscribeAck { acks })),
            })
            .await
            .context("the stream closed")?;
        frames
            .send(SubscribeRequest {
                frame: Some(subscribe_request::Frame::Credit(SubscribeCredit { n })),
            })
            .await
            .context("the stream closed")?;
        Ok(())
    };
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tick.tick() => flush(&mut pending).await?,
            message = stream.message() => {
                let Some(message) = message.context("the Subscribe stream failed")? else {
                    return Ok(());
                };
                match message.frame {
                    Some(subscribe_response::Frame::Delivery(d)) => {
                        let now = base.elapsed().as_secs_f64() * 1000.0;
                        seen.delivered.fetch_add(1, Ordering::Relaxed);
                        if seen.measuring.load(Ordering::Relaxed)
                            && let Ok(content) = serde_json::from_str::<serde_json::Value>(&d.content)
                            && let Some(sent) = content["sent_ms"].as_f64()
                        {
                            seen.latencies.lock().await.push(now - sent);
                        }
                        pending.push(d.delivery_id);
                        if pending.len() >= ACK_BATCH {
                            flush(&mut pending).await?;
                        }
                    }
                    Some(subscribe_response::Frame::AckResult(r)) => {
                        if r.status == AckStatus::Ok as i32 {
                            seen.accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            seen.not_ok.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(subscribe_response::Frame::Ping(_)) | Some(subscribe_response::Frame::Opened(_)) | None => {}
                }
            }
        }
    }
}

/// One publisher until `until`: batches of `batch`, at most `rate` messages/s if given.
async fn publish(
    channel: Channel,
    token: String,
    base: Instant,
    until: Instant,
    batch: usize,
    rate: Option<f64>,
    published: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut client = client(&channel, &token);
    let gap = rate.map(|r| Duration::from_secs_f64(batch as f64 / r.max(1.0)));
    let mut next = Instant::now();
    while Instant::now() < until {
        if let Some(gap) = gap {
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
            next += gap;
        }
        let sent_ms = base.elapsed().as_secs_f64() * 1000.0;
        let messages = (0..batch)
            .map(|_| PublishMessage {
                content: json!({ "sent_ms": sent_ms }).to_string(),
                ..Default::default()
            })
            .collect();
        client
            .publish(PublishRequest {
                workspace: String::new(),
                topic: TOPIC.into(),
                messages,
            })
            .await
            .context("a publish failed")?;
        published.fetch_add(batch as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs the publishers for `duration` (at `rate` in all, or as fast as they can) and
/// returns how many they published.
async fn publish_phase(
    stack: &Stack,
    channel: &Channel,
    base: Instant,
    sizes: &Sizes,
    batch: usize,
    rate: Option<f64>,
) -> anyhow::Result<u64> {
    let published = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + sizes.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..sizes.publishers {
        tasks.spawn(publish(
            channel.clone(),
            stack.admin_token.clone(),
            base,
            until,
            batch,
            rate.map(|r| r / sizes.publishers as f64),
            published.clone(),
        ));
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a publisher panicked")??;
    }
    Ok(published.load(Ordering::Relaxed))
}

async fn backlog(channel: &Channel, token: &str) -> anyhow::Result<u64> {
    Ok(client(channel, token)
        .get_subscription(GetSubscriptionRequest {
            workspace: String::new(),
            topic: TOPIC.into(),
            name: SUBSCRIPTION.into(),
        })
        .await
        .context("cannot read the subscription")?
        .into_inner()
        .backlog)
}

/// Waits until the subscription owes nothing (or a minute has passed).
async fn drain(channel: &Channel, token: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = backlog(channel, token).await?;
        if left == 0 || Instant::now() > deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(stack: &Stack, sizes: &Sizes) -> anyhow::Result<Report> {
    let channel = stack.channel().await?;
    let token = stack.admin_token.clone();
    let mut admin = client(&channel, &token);
    admin
        .create_topic(CreateTopicRequest {
            slug: TOPIC.into(),
            store_policy: StorePolicy::Cache as i32,
            ..Default::default()
        })
        .await
        .context("cannot create the topic")?;
    admin
        .create_subscription(CreateSubscriptionRequest {
            topic: TOPIC.into(),
            name: SUBSCRIPTION.into(),
            ..Default::default()
        })
        .await
        .context("cannot create the subscription")?;
    let base = Instant::now();
    let seen = Arc::new(Seen::default());
    let (stop, stopped) = watch::channel(false);
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..sizes.consumers {
        // Each consumer on its own connection, as separate processes would be.
        let channel = stack.channel().await?;
        consumers.spawn(consume(
            channel,
            token.clone(),
            base,
            seen.clone(),
            stopped.clone(),
        ));
    }

    eprintln!(
        "  peak: {} publishers (batches of {PEAK_BATCH}) and {} consumers for {:?}",
        sizes.publishers, sizes.consumers, sizes.duration
    );
    let accepted_before = seen.accepted.load(Ordering::Relaxed);
    let started = Instant::now();
    let peak_published = publish_phase(stack, &channel, base, sizes, PEAK_BATCH, None).await?;
    let window = started.elapsed().as_secs_f64();
    let peak_accepted = seen.accepted.load(Ordering::Relaxed) - accepted_before;
    let throughput = peak_accepted as f64 / window;
    let left = drain(&channel, &token).await?;
    anyhow::ensure!(
        left == 0,
        "{left} messages were still owed a minute after the peak phase"
    );

    let half_rate = throughput / 2.0;
    eprintln!(
        "  half load: {half_rate:.0} messages/s (batches of {HALF_BATCH}) for {:?}",
        sizes.duration
    );
    seen.measuring.store(true, Ordering::Relaxed);
    let half_published =
        publish_phase(stack, &channel, base, sizes, HALF_BATCH, Some(half_rate)).await?;
    let left = drain(&channel, &token).await?;
    seen.measuring.store(false, Ordering::Relaxed);
    anyhow::ensure!(
        left == 0,
        "{left} messages were still owed a minute after the half-load phase"
    );
    let _ = stop.send(true);
    while let Some(done) = consumers.join_next().await {
        done.context("a consumer panicked")??;
    }
    let mut latencies = std::mem::take(&mut *seen.latencies.lock().await);
    latencies.sort_by(f64::total_cmp);
    let total_published = peak_published + half_published;
    let accepted = seen.accepted.load(Ordering::Relaxed);
    let not_ok = seen.not_ok.load(Ordering::Relaxed);

    let clients = sizes.publishers + sizes.consumers;
    eprintln!("  pgbench: {clients} clients for {:?}", sizes.duration);
    let pgbench_tps = pgbench(stack, clients, sizes.duration).await?;
    let p50 = percentile(&latencies, 50.0);
    let p99 = percentile(&latencies, 99.0);
    let mark = |ok: bool| if ok { "met" } else { "NOT met" };
    let rows = vec![
        (
            "publishers / consumers".to_owned(),
            format!(
                "{} / {} on one subscription",
                sizes.publishers, sizes.consumers
            ),
        ),
        (
            "peak: accepted".to_owned(),
            format!(
                "{peak_accepted} in {window:.1} s = {throughput:.0} messages/s (goal ≥ {GOAL_THROUGHPUT:.0}: {})",
                mark(throughput >= GOAL_THROUGHPUT)
            ),
        ),
        (
            "half load: latency p50 / p99".to_owned(),
            format!(
                "{} / {} over {} messages (goal p99 ≤ {}: {})",
                ms(p50),
                ms(p99),
                latencies.len(),
                ms(GOAL_P99_MS),
                mark(p99 <= GOAL_P99_MS)
            ),
        ),
        (
            "every message accepted".to_owned(),
            format!("{accepted} ok of {total_published} published ({not_ok} acks not ok)"),
        ),
        (
            "pgbench one-row UPDATE".to_owned(),
            format!(
                "{pgbench_tps:.0} tps with {clients} clients (messages/s ÷ tps = {:.2})",
                throughput / pgbench_tps
            ),
        ),
    ];
    Ok(Report {
        scenario: "topics".into(),
        rows,
        json: json!({
            "publishers": sizes.publishers,
            "consumers": sizes.consumers,
            "duration_seconds": sizes.duration.as_secs_f64(),
            "peak_messages_per_second": throughput,
            "peak_accepted": peak_accepted,
            "half_load_rate": half_rate,
            "latency_ms": { "p50": p50, "p99": p99, "samples": latencies.len() },
            "published": total_published,
            "accepted": accepted,
            "acks_not_ok": not_ok,
            "pgbench_tps": pgbench_tps,
        }),
    })
}
