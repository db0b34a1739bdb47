//! Topics from a test's side: a TopicService client, topics and subscriptions made in one
//! call, publishing JSON, and [`Consumer`], one `Subscribe` stream driven frame by frame.
//!
//! A consumer's every wait is bounded (a failing test says what it waited for); nothing
//! here sleeps to let time pass.

use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::topic_service_client::TopicServiceClient;
use berth_common::proto::{
    AckItem, AckKind, AckResult, CreateSubscriptionRequest, CreateTopicRequest, Delivery,
    PublishMessage, PublishRequest, StorePolicy, SubscribeAck, SubscribeCredit, SubscribeOpen,
    SubscribeOpened, SubscribePong, SubscribeRequest, SubscribeResponse, Subscription, Topic,
    subscribe_request, subscribe_response,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::{Authed, TestServer};

/// How long a consumer waits for a frame it expects before the test fails.
pub const FRAME_WAIT: Duration = Duration::from_secs(30);

/// A TopicService client using `token`.
pub async fn topics(server: &TestServer, token: &str) -> TopicServiceClient<Authed> {
    TopicServiceClient::with_interceptor(server.channel().await, BearerAuth::new(token))
}

/// Makes topic `slug` in `default` with `policy`, as the admin.
pub async fn topic(server: &TestServer, slug: &str, policy: StorePolicy) -> Topic {
    topics(server, &server.admin_token)
        .await
        .create_topic(CreateTopicRequest {
            slug: slug.to_owned(),
            store_policy: policy as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Makes subscription `name` of `topic` in `default` as the admin, with `adjust` applied
/// to the request.
pub async fn subscription(
    server: &TestServer,
    topic: &str,
    name: &str,
    adjust: impl FnOnce(&mut CreateSubscriptionRequest),
) -> Subscription {
    let mut request = CreateSubscriptionRequest {
        topic: topic.to_owned(),
        name: name.to_owned(),
        ..Default::default()
    };
    adjust(&mut request);
    topics(server, &server.admin_token)
        .await
        .create_subscription(request)
        .await
        .unwrap()
        .into_inner()
}

/// A message with JSON `content`.
pub fn message(content: serde_json::Value) -> PublishMessage {
    PublishMessage {
        content: content.to_string(),
        ..Default::default()
    }
}

/// Publishes `messages` on `topic` in `default` with `token`; the seqs.
pub async fn try_publish(
    server: &TestServer,
    token: &str,
    topic: &str,
    messages: Vec<PublishMessage>,
) -> Result<Vec<i64>, tonic::Status> {
    let published = topics(server, token)
        .await
        .publish(PublishRequest {
            workspace: String::new(),
            topic: topic.to_owned(),
            messages,
        })
        .await?
        .into_inner();
    Ok(published.messages.into_iter().map(|m| m.seq).collect())
}

/// Publishes `messages` on `topic` in `default` as the admin; the seqs.
pub async fn publish(server: &TestServer, topic: &str, messages: Vec<PublishMessage>) -> Vec<i64> {
    try_publish(server, &server.admin_token, topic, messages)
        .await
        .unwrap()
}

/// One open `Subscribe` stream.
pub struct Consumer {
    frames: mpsc::Sender<SubscribeRequest>,
    stream: tonic::Streaming<SubscribeResponse>,
    /// What the server answered the open with.
    pub opened: SubscribeOpened,
    /// Frames read while waiting for another kind, in order.
    held: Vec<subscribe_response::Frame>,
}

impl Consumer {
    /// Opens a consumer of `subscription` on `topic` in `workspace` ('' for `default`)
    /// with `token` and `credit`, and waits for the server's `opened` frame.
    pub async fn open(
        server: &TestServer,
        token: &str,
        workspace: &str,
        topic: &str,
        subscription: &str,
        credit: u32,
    ) -> Result<Consumer, tonic::Status> {
        let (frames, rx) = mpsc::channel(1024);
        frames
            .send(SubscribeRequest {
                frame: Some(subscribe_request::Frame::Open(SubscribeOpen {
                    workspace: workspace.to_owned(),
                    topic: topic.to_owned(),
                    subscription: subscription.to_owned(),
                    initial_credit: credit,
                })),
            })
            .await
            .unwrap();
        let mut stream = topics(server, token)
            .await
            .subscribe(ReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = tokio::time::timeout(FRAME_WAIT, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no opened frame within {FRAME_WAIT:?}"))?;
        match first.and_then(|f| f.frame) {
            Some(subscribe_response::Frame::Opened(opened)) => Ok(Consumer {
                frames,
                stream,
                opened,
                held: Vec::new(),
            }),
            other => panic!("the first frame is opened, got {other:?}"),
        }
    }

    /// [`Consumer::open`] in `default` as the admin, which must succeed.
    pub async fn admin(
        server: &TestServer,
        topic: &str,
        subscription: &str,
        credit: u32,
    ) -> Consumer {
        Consumer::open(server, &server.admin_token, "", topic, subscription, credit)
            .await
            .unwrap()
    }

    /// Sends a client frame.
    pub async fn send(&self, frame: subscribe_request::Frame) {
        self.frames
            .send(SubscribeRequest { frame: Some(frame) })
            .await
            .unwrap();
    }

    /// Grants `n` more deliveries.
    pub async fn credit(&self, n: u32) {
        self.send(subscribe_request::Frame::Credit(SubscribeCredit { n }))
            .await;
    }

    /// Answers a ping.
    pub async fn pong(&self) {
        self.send(subscribe_request::Frame::Pong(SubscribePong {}))
            .await;
    }

    /// The next frame within `within`; `None` when none came (the stream stays usable),
    /// or panics if the stream ended.
    pub async fn next_within(
        &mut self,
        within: Duration,
    ) -> Result<Option<subscribe_response::Frame>, tonic::Status> {
        if !self.held.is_empty() {
            return Ok(Some(self.held.remove(0)));
        }
        match tokio::time::timeout(within, self.stream.message()).await {
            Err(_) => Ok(None),
            Ok(Ok(Some(message))) => Ok(message.frame),
            Ok(Ok(None)) => panic!("the Subscribe stream ended without a status"),
            Ok(Err(status)) => Err(status),
        }
    }

    /// The stream's final status: waits (bounded) for the server to end it.
    pub async fn ended(mut self) -> tonic::Status {
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the stream did not end within {FRAME_WAIT:?}"
            );
            match tokio::time::timeout(left, self.stream.message()).await {
                Err(_) => panic!("the stream did not end within {FRAME_WAIT:?}"),
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return tonic::Status::ok("ended"),
                Ok(Err(status)) => return status,
            }
        }
    }

    /// Waits for a frame `pick` accepts, holding the others back for later reads.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        pick: impl Fn(&subscribe_response::Frame) -> Option<T>,
    ) -> Option<T> {
        if let Some(at) = self.held.iter().position(|f| pick(f).is_some()) {
            let frame = self.held.remove(at);
            return pick(&frame);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            match tokio::time::timeout(left, self.stream.message()).await {
                Err(_) => return None,
                Ok(Ok(Some(SubscribeResponse { frame: Some(frame) }))) => {
                    if let Some(found) = pick(&frame) {
                        return Some(found);
                    }
                    self.held.push(frame);
                }
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => panic!("the stream ended while waiting for {what}"),
                Ok(Err(status)) => {
                    panic!("the stream ended with {status:?} while waiting for {what}")
                }
            }
        }
    }

    /// The next delivery within `within`, or `None`.
    pub async fn delivery_within(&mut self, within: Duration) -> Option<Delivery> {
        self.wait_for("a delivery", within, |f| match f {
            subscribe_response::Frame::Delivery(d) => Some(d.clone()),
            _ => None,
        })
        .await
    }

    /// The next delivery, which must come within [`FRAME_WAIT`].
    pub async fn delivery(&mut self) -> Delivery {
        self.delivery_within(FRAME_WAIT)
            .await
            .unwrap_or_else(|| panic!("no delivery within {FRAME_WAIT:?}"))
    }

    /// The next `n` deliveries.
    pub async fn deliveries(&mut self, n: usize) -> Vec<Delivery> {
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            got.push(self.delivery().await);
        }
        got
    }

    /// Waits for a ping (within [`FRAME_WAIT`]); `false` if none came.
    pub async fn ping(&mut self) -> bool {
        self.wait_for("a ping", FRAME_WAIT, |f| {
            matches!(f, subscribe_response::Frame::Ping(_)).then_some(())
        })
        .await
        .is_some()
    }

    /// Sends acks of `kind` for `ids` and returns their results, in order.
    pub async fn ack(&mut self, items: Vec<AckItem>) -> Vec<AckResult> {
        let n = items.len();
        self.send(subscribe_request::Frame::Ack(SubscribeAck { acks: items }))
            .await;
        let mut results = Vec::with_capacity(n);
        for _ in 0..n {
            let result = self
                .wait_for("an ack result", FRAME_WAIT, |f| match f {
                    subscribe_response::Frame::AckResult(r) => Some(r.clone()),
                    _ => None,
                })
                .await
                .unwrap_or_else(|| panic!("no ack result within {FRAME_WAIT:?}"));
            results.push(result);
        }
        results
    }

    /// Acks `ids` with `kind` (no delay or extension); the statuses, in order.
    pub async fn ack_all(&mut self, kind: AckKind, ids: &[&str]) -> Vec<i32> {
        let items = ids
            .iter()
            .map(|id| AckItem {
                delivery_id: (*id).to_owned(),
                kind: kind as i32,
                ..Default::default()
            })
            .collect();
        self.ack(items)
            .await
            .into_iter()
            .map(|r| r.status)
            .collect()
    }
}
