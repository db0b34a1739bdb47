//! `berth.v1.TopicService` on the wire; `topics` does the work.
//!
//! Conversions both ways for topics, grants, retention, subscriptions, messages and the
//! frames of the `Subscribe` stream. Enum numbers the protocol does not know, negative or
//! malformed durations and timestamps are refused here with INVALID_ARGUMENT naming the
//! field; everything else is checked by the domain. `Subscribe` waits for the `open`
//! frame (refusing a stream that starts with anything else), opens the consumer, and
//! hands the rest of the stream to `topics::stream::Session`, which runs in its own task
//! until the client goes, the server stops or the session ends; its reason is the
//! stream's final status.

use std::time::Duration;

use berth_common::proto::topic_service_server::TopicService;
use berth_common::proto::{
    self, CreateSubscriptionRequest, CreateTopicRequest, DeleteSubscriptionRequest,
    DeleteSubscriptionResponse, DeleteTopicRequest, DeleteTopicResponse, GetSubscriptionRequest,
    GetTopicRequest, ListSubscriptionsRequest, ListSubscriptionsResponse, ListTopicsRequest,
    ListTopicsResponse, PingTopicRequest, PingTopicResponse, PublishRequest, PublishResponse,
    SeekSubscriptionRequest, SubscribeRequest, SubscribeResponse, UpdateTopicRequest,
    subscribe_request, subscribe_response,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::api::auth::identity;
use crate::api::error::{respond, to_status};
use crate::api::{timestamp, timestamp_opt};
use berth_core::error::{Error, Result};
use berth_core::topics::deliver::AckStatus;
use berth_core::topics::stream::{
    AckInput, AckKind, ClientFrame, DeliveryOut, OpenInput, Opened, ServerFrame,
};
use berth_core::topics::{
    Availability, CreateTopicInput, GrantInput, MessageInput, RetentionInput, SeekTo, Start,
    StorePolicy, SubscriptionInput, SubscriptionView, TopicChange, TopicRef, TopicView, Topics,
};

/// How long a new stream may take to send its `open` frame.
const OPEN_WITHIN: Duration = Duration::from_secs(30);
/// How many server frames may wait for a slow client.
const OUTBOUND: usize = 512;

/// The TopicService implementation.
#[derive(Clone)]
pub struct TopicApi {
    topics: Topics,
    shutdown: CancellationToken,
}

impl TopicApi {
    /// The service over `topics`; open streams end when `shutdown` is cancelled.
    pub fn new(topics: Topics, shutdown: CancellationToken) -> TopicApi {
        TopicApi { topics, shutdown }
    }
}

// ----- from the wire -----

fn topic_ref(workspace: &str, slug: &str) -> TopicRef {
    TopicRef {
        workspace: workspace.to_owned(),
        slug: slug.to_owned(),
    }
}

/// A wire duration that must not be negative.
fn duration_from_proto(field: &str, d: &prost_types::Duration) -> Result<Duration> {
    let seconds = u64::try_from(d.seconds);
    let nanos = u32::try_from(d.nanos);
    match (seconds, nanos) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => Ok(Duration::new(seconds, nanos)),
        _ => Err(Error::InvalidArgument(format!(
            "{field}: must be zero or positive, e.g. 30s"
        ))),
    }
}

fn time_from_proto(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::<Utc>::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| Error::InvalidArgument(format!("{field}: not a valid timestamp")))
}

fn policy_from_proto(value: i32) -> Result<Option<StorePolicy>> {
    match proto::StorePolicy::try_from(value) {
        Ok(proto::StorePolicy::Unspecified) => Ok(None),
        Ok(proto::StorePolicy::Disabled) => Ok(Some(StorePolicy::Disabled)),
        Ok(proto::StorePolicy::Cache) => Ok(Some(StorePolicy::Cache)),
        Ok(proto::StorePolicy::Cacheall) => Ok(Some(StorePolicy::CacheAll)),
        Ok(proto::StorePolicy::Store) => Ok(Some(StorePolicy::Store)),
        Err(_) => Err(Error::InvalidArgument(format!(
            "store_policy: unknown value {value}; use STORE_POLICY_DISABLED, _CACHE, _CACHEALL or _STORE"
        ))),
    }
}

fn retention_from_proto(r: &proto::TopicRetention) -> Result<RetentionInput> {
    let max_age = match &r.max_age {
        Some(d) => {
            let age = duration_from_proto("retention.max_age", d)?;
            (!age.is_zero()).then_some(age)
        }
        None => None,
    };
    Ok(RetentionInput {
        max_age,
        max_messages: (r.max_messages > 0).then_some(r.max_messages),
    })
}

fn grants_from_proto(grants: Vec<proto::TopicGrant>) -> Vec<GrantInput> {
    grants
        .into_iter()
        .map(|g| GrantInput {
            principal: g.principal,
            produce: g.produce,
            consume: g.consume,
        })
        .collect()
}

fn start_from_proto(start: Option<proto::SubscriptionStart>) -> Result<Start> {
    let Some(start) = start else {
        return Ok(Start::New);
    };
    match proto::StartKind::try_from(start.kind) {
        Ok(proto::StartKind::Unspecified | proto::StartKind::New) => Ok(Start::New),
        Ok(proto::StartKind::All) => Ok(Start::All),
        Ok(proto::StartKind::Seq) => Ok(Start::Seq(start.seq)),
        Ok(proto::StartKind::Time) => match &start.time {
            Some(t) => Ok(Start::Time(time_from_proto("start.time", t)?)),
            None => Err(Error::InvalidArgument(
                "start.time: is required with START_KIND_TIME".into(),
            )),
        },
        Err(_) => Err(Error::InvalidArgument(format!(
            "start.kind: unknown value {}; use START_KIND_NEW, _ALL, _SEQ or _TIME",
            start.kind
        ))),
    }
}

fn ack_kind_from_proto(i: usize, value: i32) -> Result<AckKind> {
    match proto::AckKind::try_from(value) {
        Ok(proto::AckKind::Accept) => Ok(AckKind::Accept),
        Ok(proto::AckKind::Release) => Ok(AckKind::Release),
        Ok(proto::AckKind::Reject) => Ok(AckKind::Reject),
        Ok(proto::AckKind::Renew) => Ok(AckKind::Renew),
        Ok(proto::AckKind::Unspecified) | Err(_) => Err(Error::InvalidArgument(format!(
            "ack.acks[{i}].kind: {value} is not an ack; use ACK_KIND_ACCEPT, _RELEASE, _REJECT or _RENEW"
        ))),
    }
}

/// A client frame after the open; `None` for an empty frame (ignored).
fn frame_from_proto(request: SubscribeRequest) -> Result<Option<ClientFrame>> {
    use subscribe_request::Frame;
    Ok(Some(match request.frame {
        None => return Ok(None),
        Some(Frame::Open(_)) => {
            return Err(Error::InvalidArgument(
                "open: may only be the first frame of the stream".into(),
            ));
        }
        Some(Frame::Credit(credit)) => ClientFrame::Credit(credit.n),
        Some(Frame::Pong(_)) => ClientFrame::Pong,
        Some(Frame::Ack(ack)) => ClientFrame::Ack(
            ack.acks
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    Ok(AckInput {
                        kind: ack_kind_from_proto(i, item.kind)?,
                        delay: item
                            .delay
                            .as_ref()
                            .map(|d| duration_from_proto(&format!("ack.acks[{i}].delay"), d))
                            .transpose()?,
                        extend: item
                            .extend
                            .as_ref()
                            .map(|d| duration_from_proto(&format!("ack.acks[{i}].extend"), d))
                            .transpose()?,
                        delivery_id: item.delivery_id,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    }))
}

// ----- to the wire -----

fn std_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn ms_duration(ms: i64) -> prost_types::Duration {
    std_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

fn policy_to_proto(text: &str) -> proto::StorePolicy {
    match StorePolicy::parse(text) {
        Some(StorePolicy::Disabled) => proto::StorePolicy::Disabled,
        Some(StorePolicy::Cache) => proto::StorePolicy::Cache,
        Some(StorePolicy::CacheAll) => proto::StorePolicy::Cacheall,
        Some(StorePolicy::Store) => proto::StorePolicy::Store,
        None => proto::StorePolicy::Unspecified,
    }
}

fn availability_to_proto(state: Availability) -> proto::Availability {
    match state {
        Availability::Online => proto::Availability::Online,
        Availability::Offline => proto::Availability::Offline,
        Availability::Unknown => proto::Availability::Unknown,
    }
}

fn topic_to_proto(view: TopicView) -> proto::Topic {
    let row = view.row;
    let a = view.availability;
    proto::Topic {
        id: row.id.to_string(),
        workspace: view.workspace,
        slug: row.slug,
        description: row.description,
        public: row.is_public,
        system: row.is_system,
        store_policy: policy_to_proto(&row.store_policy) as i32,
        retention: Some(proto::TopicRetention {
            max_age: row.max_age_ms.map(ms_duration),
            max_messages: row
                .max_messages
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
        }),
        api_info: row.api_info.to_string(),
        grants: view
            .grants
            .into_iter()
            .map(|g| proto::TopicGrant {
                principal: g.principal,
                produce: g.produce,
                consume: g.consume,
            })
            .collect(),
        garbage_collect_at: timestamp_opt(row.garbage_collect_at),
        response_for: view.response_for,
        owner: view.owner,
        created_by: view.created_by,
        created_at: Some(timestamp(row.created_at)),
        availability: Some(proto::TopicAvailability {
            state: availability_to_proto(a.state) as i32,
            last_ping_at: timestamp_opt(a.last_ping_at),
            last_pong_at: timestamp_opt(a.last_pong_at),
            live_consumers: u32::try_from(a.live_consumers).unwrap_or(u32::MAX),
            unknown_after: Some(std_duration(a.unknown_after)),
            offline_after: Some(std_duration(a.offline_after)),
        }),
        stored_messages: view
            .stored_messages
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
    }
}

fn subscription_to_proto(view: SubscriptionView) -> proto::Subscription {
    let row = view.row;
    proto::Subscription {
        id: row.id.to_string(),
        workspace: view.workspace,
        topic: view.topic,
        name: row.name,
        internal: row.internal,
        ack_deadline: Some(ms_duration(i64::from(row.ack_deadline_ms))),
        max_deliveries: u32::try_from(row.max_deliveries).unwrap_or(0),
        backoff: row
            .backoff_ms
            .iter()
            .map(|ms| ms_duration(i64::from(*ms)))
            .collect(),
        max_in_flight: u32::try_from(row.max_in_flight).unwrap_or(0),
        dead_letter_topic: view.dead_letter_topic,
        created_by: view.created_by,
        created_at: Some(timestamp(row.created_at)),
        backlog: u64::try_from(view.backlog).unwrap_or(0),
        in_flight: u64::try_from(view.in_flight).unwrap_or(0),
        oldest_unacked_age: view.oldest_unacked.map(std_duration),
        live_consumers: u32::try_from(view.live_consumers).unwrap_or(u32::MAX),
    }
}

fn ack_status_to_proto(status: AckStatus) -> proto::AckStatus {
    match status {
        AckStatus::Ok => proto::AckStatus::Ok,
        AckStatus::Expired => proto::AckStatus::Expired,
        AckStatus::Unknown => proto::AckStatus::Unknown,
    }
}

fn opened_to_proto(opened: Opened) -> proto::SubscribeOpened {
    proto::SubscribeOpened {
        subscription_id: opened.subscription_id.to_string(),
        consumer_id: opened.consumer_id.to_string(),
        ack_deadline: Some(std_duration(opened.ack_deadline)),
        max_in_flight: opened.max_in_flight,
    }
}

fn delivery_to_proto(d: DeliveryOut) -> proto::Delivery {
    proto::Delivery {
        delivery_id: d.delivery_id,
        seq: d.seq,
        message_id: d.message_id.to_string(),
        context: d.context,
        content: d.content.to_string(),
        properties: d.properties.into_iter().collect(),
        producer: d.producer,
        published_at: Some(timestamp(d.published_at)),
        delivery_count: d.delivery_count,
        deadline: timestamp_opt(d.deadline),
    }
}

fn frame_to_proto(frame: ServerFrame) -> SubscribeResponse {
    use subscribe_response::Frame;
    let frame = match frame {
        ServerFrame::Opened(opened) => Frame::Opened(opened_to_proto(opened)),
        ServerFrame::Delivery(d) => Frame::Delivery(delivery_to_proto(*d)),
        ServerFrame::Ping => Frame::Ping(proto::SubscribePing {}),
        ServerFrame::AckResult {
            delivery_id,
            status,
        } => Frame::AckResult(proto::AckResult {
            delivery_id,
            status: ack_status_to_proto(status) as i32,
        }),
    };
    SubscribeResponse { frame: Some(frame) }
}

#[tonic::async_trait]
impl TopicService for TopicApi {
    type SubscribeStream = BoxStream<'static, Result<SubscribeResponse, Status>>;

    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<proto::Topic>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let input = CreateTopicInput {
                topic: topic_ref(&req.workspace, &req.slug),
                description: req.description,
                public: req.public,
                policy: policy_from_proto(req.store_policy)?,
                retention: req
                    .retention
                    .as_ref()
                    .map(retention_from_proto)
                    .transpose()?
                    .unwrap_or_default(),
                api_info: req.api_info,
                grants: grants_from_proto(req.grants),
            };
            Ok(topic_to_proto(
                self.topics.create_topic(&caller, input).await?,
            ))
        };
        respond(answer.await)
    }

    async fn get_topic(
        &self,
        request: Request<GetTopicRequest>,
    ) -> Result<Response<proto::Topic>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topic = topic_ref(&req.workspace, &req.slug);
            Ok(topic_to_proto(
                self.topics.get_topic(&caller, &topic).await?,
            ))
        };
        respond(answer.await)
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topics = self.topics.list_topics(&caller, &req.workspace).await?;
            Ok(ListTopicsResponse {
                topics: topics.into_iter().map(topic_to_proto).collect(),
            })
        };
        respond(answer.await)
    }

    async fn update_topic(
        &self,
        request: Request<UpdateTopicRequest>,
    ) -> Result<Response<proto::Topic>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let change = TopicChange {
                description: req.description,
                public: req.public,
                retention: req
                    .retention
                    .as_ref()
                    .map(retention_from_proto)
                    .transpose()?,
                api_info: req.api_info,
                grants: req.grants.map(|g| grants_from_proto(g.grants)),
            };
            let topic = topic_ref(&req.workspace, &req.slug);
            Ok(topic_to_proto(
                self.topics.update_topic(&caller, &topic, change).await?,
            ))
        };
        respond(answer.await)
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topic = topic_ref(&req.workspace, &req.slug);
            let deleted = self.topics.delete_topic(&caller, &topic).await?;
            Ok(DeleteTopicResponse { deleted })
        };
        respond(answer.await)
    }

    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let messages: Vec<MessageInput> = req
                .messages
                .into_iter()
                .map(|m| MessageInput {
                    message_id: m.message_id,
                    context: m.context,
                    content: m.content,
                    properties: m.properties.into_iter().collect(),
                })
                .collect();
            let topic = topic_ref(&req.workspace, &req.topic);
            let published = self.topics.publish(&caller, &topic, &messages).await?;
            Ok(PublishResponse {
                messages: published
                    .into_iter()
                    .map(|p| proto::PublishedMessage {
                        message_id: p.message_id.to_string(),
                        seq: p.seq,
                    })
                    .collect(),
            })
        };
        respond(answer.await)
    }

    async fn subscribe(
        &self,
        request: Request<Streaming<SubscribeRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = identity(&request)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(OPEN_WITHIN, inbound.message())
            .await
            .map_err(|_| {
                to_status(Error::DeadlineExceeded(format!(
                    "no open frame within {} s of opening the stream",
                    OPEN_WITHIN.as_secs()
                )))
            })??;
        let Some(SubscribeRequest {
            frame: Some(subscribe_request::Frame::Open(open)),
        }) = first
        else {
            return Err(to_status(Error::InvalidArgument(
                "open: the first frame of the stream must be open (workspace, topic, subscription)"
                    .into(),
            )));
        };
        let session = self
            .topics
            .open_consumer(
                &caller,
                OpenInput {
                    topic: topic_ref(&open.workspace, &open.topic),
                    subscription: open.subscription,
                    initial_credit: open.initial_credit,
                },
            )
            .await
            .map_err(to_status)?;
        let frames = inbound.filter_map(|message| async move {
            match message {
                Ok(request) => frame_from_proto(request).transpose(),
                Err(status) => Some(Err(Error::Unavailable(format!(
                    "the client's stream broke: {}",
                    status.message()
                )))),
            }
        });
        let (tx, rx) = tokio::sync::mpsc::channel(OUTBOUND);
        let (end_tx, end_rx) = tokio::sync::oneshot::channel::<Status>();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let ended = session.run(Box::pin(frames), tx, shutdown).await;
            let status = match ended {
                Ok(()) => Status::ok("the stream ended"),
                Err(e) => to_status(e),
            };
            // The client may be gone already.
            let _ = end_tx.send(status);
        });
        let ending = futures::stream::once(async move {
            match end_rx.await {
                Ok(status) if status.code() == tonic::Code::Ok => None,
                Ok(status) => Some(Err(status)),
                Err(_) => Some(Err(Status::unavailable("the stream ended"))),
            }
        })
        .filter_map(|end| async move { end });
        let outbound = ReceiverStream::new(rx)
            .map(|frame| Ok(frame_to_proto(frame)))
            .chain(ending);
        Ok(Response::new(Box::pin(outbound)))
    }

    async fn ping(
        &self,
        request: Request<PingTopicRequest>,
    ) -> Result<Response<PingTopicResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topic = topic_ref(&req.workspace, &req.topic);
            let pinged = self.topics.ping(&caller, &topic).await?;
            Ok(PingTopicResponse {
                pinged_at: Some(timestamp(pinged.pinged_at)),
                live_consumers: u32::try_from(pinged.live_consumers).unwrap_or(u32::MAX),
            })
        };
        respond(answer.await)
    }

    async fn create_subscription(
        &self,
        request: Request<CreateSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let backoff = req
                .backoff
                .iter()
                .enumerate()
                .map(|(i, d)| duration_from_proto(&format!("backoff[{i}]"), d))
                .collect::<Result<Vec<_>>>()?;
            let input = SubscriptionInput {
                topic: topic_ref(&req.workspace, &req.topic),
                name: req.name,
                start: start_from_proto(req.start)?,
                ack_deadline: req
                    .ack_deadline
                    .as_ref()
                    .map(|d| duration_from_proto("ack_deadline", d))
                    .transpose()?,
                max_deliveries: req.max_deliveries,
                backoff: (!backoff.is_empty()).then_some(backoff),
                max_in_flight: (req.max_in_flight > 0).then_some(req.max_in_flight),
                dead_letter_topic: req.dead_letter_topic,
            };
            Ok(subscription_to_proto(
                self.topics.create_subscription(&caller, input).await?,
            ))
        };
        respond(answer.await)
    }

    async fn get_subscription(
        &self,
        request: Request<GetSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topic = topic_ref(&req.workspace, &req.topic);
            Ok(subscription_to_proto(
                self.topics
                    .get_subscription(&caller, &topic, &req.name)
                    .await?,
            ))
        };
        respond(answer.await)
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Result<Response<ListSubscriptionsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topic = topic_ref(&req.workspace, &req.topic);
            let subscriptions = self.topics.list_subscriptions(&caller, &topic).await?;
            Ok(ListSubscriptionsResponse {
                subscriptions: subscriptions
                    .into_iter()
                    .map(subscription_to_proto)
                    .collect(),
            })
        };
        respond(answer.await)
    }

    async fn delete_subscription(
        &self,
        request: Request<DeleteSubscriptionRequest>,
    ) -> Result<Response<DeleteSubscriptionResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let topic = topic_ref(&req.workspace, &req.topic);
            let deleted = self
                .topics
                .delete_subscription(&caller, &topic, &req.name)
                .await?;
            Ok(DeleteSubscriptionResponse { deleted })
        };
        respond(answer.await)
    }

    async fn seek_subscription(
        &self,
        request: Request<SeekSubscriptionRequest>,
    ) -> Result<Response<proto::Subscription>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            use proto::seek_subscription_request::To;
            let to = match &req.to {
                Some(To::Seq(seq)) => SeekTo::Seq(*seq),
                Some(To::Time(t)) => SeekTo::Time(time_from_proto("time", t)?),
                None => {
                    return Err(Error::InvalidArgument(
                        "to: is required; give a seq or a time".into(),
                    ));
                }
            };
            let topic = topic_ref(&req.workspace, &req.topic);
            Ok(subscription_to_proto(
                self.topics
                    .seek_subscription(&caller, &topic, &req.name, to)
                    .await?,
            ))
        };
        respond(answer.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Err(Error::InvalidArgument(m)) => m,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn unknown_enum_numbers_and_negative_durations_are_refused_naming_the_field() {
        assert!(invalid(policy_from_proto(99)).starts_with("store_policy:"));
        assert_eq!(policy_from_proto(0).expect("unset"), None);
        assert!(invalid(ack_kind_from_proto(2, 0)).starts_with("ack.acks[2].kind:"));
        let negative = prost_types::Duration {
            seconds: -1,
            nanos: 0,
        };
        assert!(
            invalid(duration_from_proto("ack_deadline", &negative)).starts_with("ack_deadline:")
        );
        let start = proto::SubscriptionStart {
            kind: proto::StartKind::Time as i32,
            ..Default::default()
        };
        assert!(invalid(start_from_proto(Some(start))).starts_with("start.time:"));
    }

    #[test]
    fn a_second_open_frame_is_refused() {
        let open = SubscribeRequest {
            frame: Some(subscribe_request::Frame::Open(
                proto::SubscribeOpen::default(),
            )),
        };
        assert!(invalid(frame_from_proto(open)).starts_with("open:"));
        assert_eq!(
            frame_from_proto(SubscribeRequest { frame: None }).expect("empty"),
            None
        );
    }
}
