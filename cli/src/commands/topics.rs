//! `berth topic ...` and `berth subscription ...`.
//!
//! Every command but `topic subscribe` is one call shown as its view. `subscribe` opens a
//! Subscribe stream (making the subscription first with `--create`), grants credit as it
//! prints, prints each delivery as one line of JSON on stdout, answers pings, and with
//! `--ack` accepts each message after it is printed; `--max N` stops after N messages
//! (once their accepts are answered), Ctrl-C at once. An ack answered `expired` is noted
//! on stderr: that message was or will be delivered again.

use std::collections::BTreeMap;

use berth_common::proto::{self, subscribe_request, subscribe_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Interrupt, Server, Topics, show};
use crate::args::{
    PolicyArg, StartArg, SubscriptionCommand, SubscriptionCreateArgs, TopicCommand,
    TopicCreateArgs, TopicPublishArgs, TopicSubscribeArgs,
};
use crate::error::CliError;
use crate::follow::EXIT_INTERRUPTED;
use crate::output::{MessageLine, Printer};
use crate::values::to_proto_duration;

/// How much credit `subscribe` keeps granted ahead of what it printed.
const CREDIT_WINDOW: u64 = 64;

pub(super) async fn execute_topic(
    command: TopicCommand,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    match command {
        TopicCommand::Create(args) => {
            show(server, printer, Topics::create_topic, create_request(args)).await?;
        }
        TopicCommand::List { workspace } => {
            let list = proto::ListTopicsRequest {
                workspace: workspace.unwrap_or_default(),
            };
            show(server, printer, Topics::list_topics, list).await?;
        }
        TopicCommand::Get { topic, workspace } => {
            let get = proto::GetTopicRequest {
                workspace: workspace.unwrap_or_default(),
                slug: topic,
            };
            show(server, printer, Topics::get_topic, get).await?;
        }
        TopicCommand::Delete { topic, workspace } => {
            let delete = proto::DeleteTopicRequest {
                workspace: workspace.unwrap_or_default(),
                slug: topic,
            };
            show(server, printer, Topics::delete_topic, delete).await?;
        }
        TopicCommand::Ping { topic, workspace } => {
            let ping = proto::PingTopicRequest {
                workspace: workspace.unwrap_or_default(),
                topic,
            };
            show(server, printer, Topics::ping, ping).await?;
        }
        TopicCommand::Publish(args) => {
            show(server, printer, Topics::publish, publish_request(args)).await?;
        }
        TopicCommand::Subscribe(args) => return subscribe(args, server, printer, interrupt).await,
    }
    Ok(0)
}

pub(super) async fn execute_subscription(
    command: SubscriptionCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        SubscriptionCommand::Create(args) => {
            show(
                server,
                printer,
                Topics::create_subscription,
                subscription_request(args),
            )
            .await
        }
        SubscriptionCommand::List { topic, workspace } => {
            let list = proto::ListSubscriptionsRequest {
                workspace: workspace.unwrap_or_default(),
                topic,
            };
            show(server, printer, Topics::list_subscriptions, list).await
        }
        SubscriptionCommand::Get {
            topic,
            name,
            workspace,
        } => {
            let get = proto::GetSubscriptionRequest {
                workspace: workspace.unwrap_or_default(),
                topic,
                name,
            };
            show(server, printer, Topics::get_subscription, get).await
        }
        SubscriptionCommand::Delete {
            topic,
            name,
            workspace,
        } => {
            let delete = proto::DeleteSubscriptionRequest {
                workspace: workspace.unwrap_or_default(),
                topic,
                name,
            };
            show(server, printer, Topics::delete_subscription, delete).await
        }
        SubscriptionCommand::Seek(args) => {
            use proto::seek_subscription_request::To;
            let to = match (args.to_seq, args.to_time) {
                (Some(seq), _) => To::Seq(seq),
                (None, Some(at)) => To::Time(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
                }),
                (None, None) => {
                    return Err(CliError::Usage("give --to-seq or --to-time".into()));
                }
            };
            let seek = proto::SeekSubscriptionRequest {
                workspace: args.workspace.unwrap_or_default(),
                topic: args.topic,
                name: args.name,
                to: Some(to),
            };
            show(server, printer, Topics::seek_subscription, seek).await
        }
    }
}

fn policy_to_proto(policy: PolicyArg) -> proto::StorePolicy {
    match policy {
        PolicyArg::Disabled => proto::StorePolicy::Disabled,
        PolicyArg::Cache => proto::StorePolicy::Cache,
        PolicyArg::Cacheall => proto::StorePolicy::Cacheall,
        PolicyArg::Store => proto::StorePolicy::Store,
    }
}

/// The `CreateTopicRequest` the flags describe; a principal given as producer and
/// consumer is one grant of both.
pub(crate) fn create_request(args: TopicCreateArgs) -> proto::CreateTopicRequest {
    let mut grants: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for principal in args.producers {
        grants.entry(principal).or_default().0 = true;
    }
    for principal in args.consumers {
        grants.entry(principal).or_default().1 = true;
    }
    proto::CreateTopicRequest {
        workspace: args.workspace.unwrap_or_default(),
        slug: args.topic,
        description: args.description.unwrap_or_default(),
        public: args.public,
        store_policy: args
            .policy
            .map_or(proto::StorePolicy::Unspecified, policy_to_proto) as i32,
        retention: Some(proto::TopicRetention {
            max_age: args.max_age.map(to_proto_duration),
            max_messages: args.max_messages.unwrap_or(0),
        }),
        api_info: args.api_info.unwrap_or_default(),
        grants: grants
            .into_iter()
            .map(|(principal, (produce, consume))| proto::TopicGrant {
                principal,
                produce,
                consume,
            })
            .collect(),
    }
}

/// The `PublishRequest` of one message.
pub(crate) fn publish_request(args: TopicPublishArgs) -> proto::PublishRequest {
    proto::PublishRequest {
        workspace: args.workspace.unwrap_or_default(),
        topic: args.topic,
        messages: vec![proto::PublishMessage {
            message_id: args.id.unwrap_or_default(),
            context: args.context.unwrap_or_default(),
            content: args.json,
            properties: args
                .properties
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
        }],
    }
}

/// The `CreateSubscriptionRequest` the flags describe.
pub(crate) fn subscription_request(
    args: SubscriptionCreateArgs,
) -> proto::CreateSubscriptionRequest {
    let start = args.start.map(|start| match start {
        StartArg::New => proto::SubscriptionStart {
            kind: proto::StartKind::New as i32,
            ..Default::default()
        },
        StartArg::All => proto::SubscriptionStart {
            kind: proto::StartKind::All as i32,
            ..Default::default()
        },
        StartArg::Seq(seq) => proto::SubscriptionStart {
            kind: proto::StartKind::Seq as i32,
            seq,
            time: None,
        },
        StartArg::Time(at) => proto::SubscriptionStart {
            kind: proto::StartKind::Time as i32,
            seq: 0,
            time: Some(prost_types::Timestamp {
                seconds: at.timestamp(),
                nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
            }),
        },
    });
    proto::CreateSubscriptionRequest {
        workspace: args.workspace.unwrap_or_default(),
        topic: args.topic,
        name: args.name,
        start,
        ack_deadline: args.ack_deadline.map(to_proto_duration),
        max_deliveries: args.max_deliveries,
        backoff: args
            .backoff
            .map(|b| b.0)
            .unwrap_or_default()
            .into_iter()
            .map(to_proto_duration)
            .collect(),
        max_in_flight: args.max_in_flight.unwrap_or(0),
        dead_letter_topic: args.dead_letter.unwrap_or_default(),
    }
}

fn frame(frame: subscribe_request::Frame) -> proto::SubscribeRequest {
    proto::SubscribeRequest { frame: Some(frame) }
}

/// `topic subscribe`: see the module docs.
async fn subscribe(
    args: TopicSubscribeArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let mut client: Topics = server.client().await?;
    let workspace = args.workspace.clone().unwrap_or_default();
    if args.create {
        let made = client
            .create_subscription(proto::CreateSubscriptionRequest {
                workspace: workspace.clone(),
                topic: args.topic.clone(),
                name: args.subscription.clone(),
                start: Some(proto::SubscriptionStart {
                    kind: proto::StartKind::All as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        match made {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::AlreadyExists => {}
            Err(status) => return Err(status.into()),
        }
    }
    let window = args.max.map_or(CREDIT_WINDOW, |max| max.min(CREDIT_WINDOW));
    let (frames, outgoing) = mpsc::channel(64);
    let open = frame(subscribe_request::Frame::Open(proto::SubscribeOpen {
        workspace,
        topic: args.topic.clone(),
        subscription: args.subscription.clone(),
        initial_credit: u32::try_from(window).unwrap_or(u32::MAX),
    }));
    // Room for the open frame was made above; the receiver is still here.
    frames
        .send(open)
        .await
        .map_err(|_| CliError::Local("the stream closed before it opened".into()))?;
    let mut stream = client
        .subscribe(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let out = &mut *printer.out;
    let err = &mut *printer.err;
    let read = async {
        let mut printed: u64 = 0;
        let mut awaiting_acks: u64 = 0;
        let send = async |f: subscribe_request::Frame| {
            frames
                .send(frame(f))
                .await
                .map_err(|_| CliError::Local("the stream to the server closed".into()))
        };
        loop {
            if args.max.is_some_and(|max| printed >= max) && awaiting_acks == 0 {
                return Ok(());
            }
            let Some(message) = stream.message().await? else {
                return Ok(());
            };
            match message.frame {
                Some(subscribe_response::Frame::Delivery(delivery)) => {
                    if args.max.is_some_and(|max| printed >= max) {
                        // Beyond --max: not printed; its lease runs out and it goes out
                        // again to whoever consumes next.
                        continue;
                    }
                    out.write_all(
                        MessageLine::from(&delivery)
                            .line()
                            .map_err(|e| {
                                CliError::Local(format!("cannot encode the message as JSON: {e}"))
                            })?
                            .as_bytes(),
                    )?;
                    out.flush()?;
                    printed += 1;
                    if args.ack && !delivery.delivery_id.is_empty() {
                        send(subscribe_request::Frame::Ack(proto::SubscribeAck {
                            acks: vec![proto::AckItem {
                                delivery_id: delivery.delivery_id,
                                kind: proto::AckKind::Accept as i32,
                                ..Default::default()
                            }],
                        }))
                        .await?;
                        awaiting_acks += 1;
                    }
                    let more = args.max.is_none_or(|max| printed + window <= max);
                    if more {
                        send(subscribe_request::Frame::Credit(proto::SubscribeCredit {
                            n: 1,
                        }))
                        .await?;
                    }
                }
                Some(subscribe_response::Frame::AckResult(result)) => {
                    awaiting_acks = awaiting_acks.saturating_sub(1);
                    if result.status != proto::AckStatus::Ok as i32 {
                        writeln!(
                            err,
                            "[berth] the accept of {} was not applied (its lease had run out): it is delivered again",
                            result.delivery_id
                        )?;
                    }
                }
                Some(subscribe_response::Frame::Ping(_)) => {
                    send(subscribe_request::Frame::Pong(proto::SubscribePong {})).await?;
                }
                Some(subscribe_response::Frame::Opened(_)) | None => {}
            }
        }
    };
    let ended = tokio::select! {
        biased;
        () = interrupt => None,
        ended = read => Some(ended),
    };
    match ended {
        None => Ok(EXIT_INTERRUPTED),
        Some(ended) => ended.map(|()| 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    fn topic(line: &[&str]) -> TopicCommand {
        match parse(line).command {
            Command::Topic(command) => command,
            other => panic!("not a topic command: {other:?}"),
        }
    }

    #[test]
    fn producers_and_consumers_become_one_grant_per_principal() {
        let TopicCommand::Create(args) = topic(&[
            "topic",
            "create",
            "jobs",
            "--producer",
            "role:contributor",
            "--consumer",
            "role:contributor",
            "--consumer",
            "user:alice",
            "--policy",
            "store",
            "--max-age",
            "1h",
        ]) else {
            panic!("create");
        };
        let request = create_request(args);
        assert_eq!(request.store_policy, proto::StorePolicy::Store as i32);
        assert_eq!(request.grants.len(), 2);
        let contributor = request
            .grants
            .iter()
            .find(|g| g.principal == "role:contributor")
            .expect("granted");
        assert!(contributor.produce && contributor.consume);
        assert_eq!(
            request
                .retention
                .expect("retention")
                .max_age
                .expect("age")
                .seconds,
            3600
        );
    }

    #[test]
    fn publish_sends_one_message_with_its_properties() {
        let TopicCommand::Publish(args) = topic(&[
            "topic",
            "publish",
            "jobs",
            "--json",
            r#"{"n": 1}"#,
            "--context",
            "c1",
            "--property",
            "response_topic=answers",
        ]) else {
            panic!("publish");
        };
        let request = publish_request(args);
        assert_eq!(request.messages.len(), 1);
        assert_eq!(request.messages[0].content, r#"{"n": 1}"#);
        assert_eq!(request.messages[0].properties["response_topic"], "answers");
    }
}
