//! `berth.v1.NotificationService` on the wire; `notifications` does the work.
//!
//! Conversions both ways for channels, reactions and deliveries. A channel goes back
//! without its secret and with its header names only; the signing secret is in the
//! answers of CreateChannel and RotateChannelSecret and nowhere else. An empty
//! `settings` on create and an unknown delivery state are refused here naming the
//! field; everything else is checked by the domain.

use berth_common::proto::notification_service_server::NotificationService;
use berth_common::proto::{
    self, CreateChannelRequest, CreateChannelResponse, CreateReactionRequest, DeleteChannelRequest,
    DeleteChannelResponse, DeleteReactionRequest, DeleteReactionResponse, GetChannelRequest,
    ListChannelsRequest, ListChannelsResponse, ListDeliveriesRequest, ListDeliveriesResponse,
    ListReactionsRequest, ListReactionsResponse, NotificationChannel, RedeliverDeliveryRequest,
    RotateChannelSecretRequest, RotateChannelSecretResponse, TestChannelRequest,
    UpdateChannelRequest,
};
use tonic::{Request, Response, Status};

use crate::api::auth::identity;
use crate::api::error::respond;
use crate::api::{duration_ms, string_map, timestamp, timestamp_opt};
use berth_core::error::{Error, Result};
use berth_core::notifications::{
    ChannelChange, ChannelInput, ChannelKind, ChannelRef, ChannelView, DeliveryQuery,
    DeliveryState, DeliveryView, Notifications, ReactionInput, ReactionQuery, ReactionView,
    SettingsInput,
};

/// The NotificationService implementation.
#[derive(Clone)]
pub struct NotificationApi {
    notifications: Notifications,
}

impl NotificationApi {
    /// The service over `notifications`.
    pub fn new(notifications: Notifications) -> NotificationApi {
        NotificationApi { notifications }
    }
}

fn channel_ref(workspace: &str, name: &str) -> ChannelRef {
    ChannelRef {
        workspace: workspace.to_owned(),
        name: name.to_owned(),
    }
}

fn channel_to_proto(view: ChannelView) -> Result<NotificationChannel> {
    use proto::notification_channel::Settings;
    let row = view.row;
    let kind = row.kind()?;
    let settings = match kind {
        ChannelKind::Webhook => Settings::Webhook(proto::WebhookSettings {
            url: row.url,
            headers: Default::default(),
            header_names: row.header_names,
        }),
        ChannelKind::Email => Settings::Email(proto::EmailSettings {
            recipients: row.recipients,
            subject_prefix: row.subject_prefix,
        }),
    };
    Ok(NotificationChannel {
        id: row.id.to_string(),
        workspace: view.workspace,
        name: row.name,
        kind: kind.as_str().to_owned(),
        settings: Some(settings),
        event_types: row.event_types,
        enabled: row.enabled,
        disabled_reason: row.disabled_reason,
        disabled_at: timestamp_opt(row.disabled_at),
        failures_in_row: u32::try_from(row.failures_in_row).unwrap_or(0),
        last_error: row.last_error,
        created_by: view.created_by,
        created_at: Some(timestamp(row.created_at)),
        modified_at: Some(timestamp(row.modified_at)),
    })
}

fn reaction_to_proto(view: ReactionView) -> proto::Reaction {
    let row = view.row;
    proto::Reaction {
        id: row.id.to_string(),
        workspace: view.workspace,
        object_kind: row.object_kind,
        object_id: row.object_id.to_string(),
        object: view.object,
        on: row.on_event,
        channel: view.channel,
        created_by: view.created_by,
        created_at: Some(timestamp(row.created_at)),
    }
}

fn delivery_to_proto(view: DeliveryView) -> proto::NotificationDelivery {
    let row = view.row;
    let pending = row.state == DeliveryState::Pending.as_str();
    proto::NotificationDelivery {
        id: row.id.to_string(),
        workspace: view.workspace,
        channel: view.channel,
        event_id: row.event_id.to_string(),
        event_type: row.event_type,
        object_id: row.object_id.to_string(),
        state: row.state,
        attempts: u32::try_from(row.attempts).unwrap_or(0),
        next_attempt_at: pending.then(|| timestamp(row.next_attempt_at)),
        created_at: Some(timestamp(row.created_at)),
        finished_at: timestamp_opt(row.finished_at),
        last_error: row.last_error,
        attempt_log: view
            .attempts
            .into_iter()
            .map(|a| proto::DeliveryAttempt {
                number: u32::try_from(a.number).unwrap_or(0),
                at: Some(timestamp(a.at)),
                status_code: u32::try_from(a.status_code).unwrap_or(0),
                error: a.error,
                latency: Some(duration_ms(u64::try_from(a.latency_ms).unwrap_or(0))),
                response: a.response,
                request_headers: string_map(&a.request_headers),
                will_retry: a.will_retry,
            })
            .collect(),
    }
}

fn state_from_proto(text: &str) -> Result<Option<DeliveryState>> {
    if text.is_empty() {
        return Ok(None);
    }
    DeliveryState::parse(text).map(Some).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "state: {text:?} is not a delivery state; use one of {}, or leave it empty",
            DeliveryState::words()
        ))
    })
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn create_channel(
        &self,
        request: Request<CreateChannelRequest>,
    ) -> Result<Response<CreateChannelResponse>, Status> {
        use proto::create_channel_request::Settings;
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let settings = match req.settings {
                Some(Settings::Webhook(w)) => SettingsInput::Webhook {
                    url: w.url,
                    headers: w.headers.into_iter().collect(),
                },
                Some(Settings::Email(e)) => SettingsInput::Email {
                    recipients: e.recipients,
                    subject_prefix: e.subject_prefix,
                },
                None => {
                    return Err(Error::InvalidArgument(
                        "settings: is required; give webhook (a URL) or email (recipients)".into(),
                    ));
                }
            };
            let input = ChannelInput {
                name: req.name,
                settings,
                event_types: req.event_types,
                disabled: req.disabled,
            };
            let made = self
                .notifications
                .create_channel(&caller, &req.workspace, input)
                .await?;
            Ok(CreateChannelResponse {
                channel: Some(channel_to_proto(made.channel)?),
                signing_secret: made.signing_secret,
            })
        };
        respond(answer.await)
    }

    async fn get_channel(
        &self,
        request: Request<GetChannelRequest>,
    ) -> Result<Response<NotificationChannel>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            channel_to_proto(
                self.notifications
                    .get_channel(&caller, &channel_ref(&req.workspace, &req.name))
                    .await?,
            )
        };
        respond(answer.await)
    }

    async fn list_channels(
        &self,
        request: Request<ListChannelsRequest>,
    ) -> Result<Response<ListChannelsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let channels = self
                .notifications
                .list_channels(&caller, &req.workspace)
                .await?
                .into_iter()
                .map(channel_to_proto)
                .collect::<Result<Vec<_>>>()?;
            Ok(ListChannelsResponse { channels })
        };
        respond(answer.await)
    }

    async fn update_channel(
        &self,
        request: Request<UpdateChannelRequest>,
    ) -> Result<Response<NotificationChannel>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let change = ChannelChange {
                enabled: req.enabled,
                disabled_reason: req.disabled_reason,
                event_types: req.set_event_types.then_some(req.event_types),
                url: req.url,
                headers: req.set_headers.then(|| req.headers.into_iter().collect()),
                recipients: (!req.recipients.is_empty()).then_some(req.recipients),
                subject_prefix: req.subject_prefix,
            };
            channel_to_proto(
                self.notifications
                    .update_channel(&caller, &channel_ref(&req.workspace, &req.name), change)
                    .await?,
            )
        };
        respond(answer.await)
    }

    async fn rotate_channel_secret(
        &self,
        request: Request<RotateChannelSecretRequest>,
    ) -> Result<Response<RotateChannelSecretResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            let rotated = self
                .notifications
                .rotate_secret(&caller, &channel_ref(&req.workspace, &req.name))
                .await?;
            Ok(RotateChannelSecretResponse {
                channel: Some(channel_to_proto(rotated.channel)?),
                signing_secret: rotated.signing_secret,
            })
        };
        respond(answer.await)
    }

    async fn delete_channel(
        &self,
        request: Request<DeleteChannelRequest>,
    ) -> Result<Response<DeleteChannelResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            self.notifications
                .delete_channel(&caller, &channel_ref(&req.workspace, &req.name))
                .await?;
            Ok(DeleteChannelResponse {})
        };
        respond(answer.await)
    }

    async fn test_channel(
        &self,
        request: Request<TestChannelRequest>,
    ) -> Result<Response<proto::NotificationDelivery>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            Ok(delivery_to_proto(
                self.notifications
                    .test_channel(&caller, &channel_ref(&req.workspace, &req.name))
                    .await?,
            ))
        };
        respond(answer.await)
    }

    async fn list_deliveries(
        &self,
        request: Request<ListDeliveriesRequest>,
    ) -> Result<Response<ListDeliveriesResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let query = DeliveryQuery {
                state: state_from_proto(&req.state)?,
                workspace: req.workspace,
                channel: req.channel,
                limit: req.limit,
                page_token: req.page_token,
            };
            let page = self.notifications.list_deliveries(&caller, query).await?;
            Ok(ListDeliveriesResponse {
                deliveries: page.deliveries.into_iter().map(delivery_to_proto).collect(),
                next_page_token: page.next_page_token,
            })
        };
        respond(answer.await)
    }

    async fn redeliver_delivery(
        &self,
        request: Request<RedeliverDeliveryRequest>,
    ) -> Result<Response<proto::NotificationDelivery>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            Ok(delivery_to_proto(
                self.notifications
                    .redeliver(&caller, &req.workspace, &req.id)
                    .await?,
            ))
        };
        respond(answer.await)
    }

    async fn create_reaction(
        &self,
        request: Request<CreateReactionRequest>,
    ) -> Result<Response<proto::Reaction>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let input = ReactionInput {
                workspace: req.workspace,
                object_kind: req.object_kind,
                object: req.object,
                on: req.on,
                channel: req.channel,
            };
            Ok(reaction_to_proto(
                self.notifications.create_reaction(&caller, input).await?,
            ))
        };
        respond(answer.await)
    }

    async fn list_reactions(
        &self,
        request: Request<ListReactionsRequest>,
    ) -> Result<Response<ListReactionsResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.into_inner();
        let answer = async {
            let query = ReactionQuery {
                workspace: req.workspace,
                object_kind: req.object_kind,
                object: req.object,
                channel: req.channel,
            };
            let reactions = self
                .notifications
                .list_reactions(&caller, query)
                .await?
                .into_iter()
                .map(reaction_to_proto)
                .collect();
            Ok(ListReactionsResponse { reactions })
        };
        respond(answer.await)
    }

    async fn delete_reaction(
        &self,
        request: Request<DeleteReactionRequest>,
    ) -> Result<Response<DeleteReactionResponse>, Status> {
        let caller = identity(&request)?;
        let req = request.get_ref();
        let answer = async {
            self.notifications
                .delete_reaction(&caller, &req.workspace, &req.id)
                .await?;
            Ok(DeleteReactionResponse {})
        };
        respond(answer.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_delivery_states_are_refused_naming_the_field() {
        let error = state_from_proto("lost").expect_err("must be refused");
        assert!(error.to_string().starts_with("state:"), "{error}");
        assert_eq!(state_from_proto("").expect("empty"), None);
        assert_eq!(
            state_from_proto("failed").expect("known"),
            Some(DeliveryState::Failed)
        );
    }
}
