//! `berth channel ...` and `berth reaction ...`.
//!
//! Every command is one call shown as its view. `channel create` and `channel
//! rotate-secret` print the signing secret as `token create` prints a token: in a table,
//! alone on stdout (so `berth channel create ... > secret` keeps it), with what was done
//! and that it is shown only once on stderr.

use berth_common::proto;

use super::{Notifications, Server, show};
use crate::args::{
    ChannelCommand, ChannelCreateArgs, ChannelUpdateArgs, OutputFormat, ReactionCommand,
};
use crate::error::CliError;
use crate::output::{CreatedChannelView, DeletedView, Printer};
use crate::values::into_map;

pub(super) async fn execute_channel(
    command: ChannelCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        ChannelCommand::Create(args) => {
            let created = server
                .call(Notifications::create_channel, create_request(args))
                .await?;
            secret(printer, CreatedChannelView::created(created))
        }
        ChannelCommand::List { workspace } => {
            let list = proto::ListChannelsRequest {
                workspace: workspace.unwrap_or_default(),
            };
            show(server, printer, Notifications::list_channels, list).await
        }
        ChannelCommand::Get { name, workspace } => {
            let get = proto::GetChannelRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Notifications::get_channel, get).await
        }
        ChannelCommand::Update(args) => {
            let update = update_request(args)?;
            show(server, printer, Notifications::update_channel, update).await
        }
        ChannelCommand::Delete { name, workspace } => {
            let delete = proto::DeleteChannelRequest {
                workspace: workspace.unwrap_or_default(),
                name: name.clone(),
            };
            server.call(Notifications::delete_channel, delete).await?;
            printer.show(&DeletedView {
                kind: "channel",
                id: name,
            })
        }
        ChannelCommand::Test { name, workspace } => {
            let test = proto::TestChannelRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            show(server, printer, Notifications::test_channel, test).await
        }
        ChannelCommand::Redeliver { id, workspace } => {
            let again = proto::RedeliverDeliveryRequest {
                workspace: workspace.unwrap_or_default(),
                id,
            };
            show(server, printer, Notifications::redeliver_delivery, again).await
        }
        ChannelCommand::Deliveries(args) => {
            let list = proto::ListDeliveriesRequest {
                workspace: args.workspace.unwrap_or_default(),
                channel: args.channel.unwrap_or_default(),
                state: args
                    .state
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_default(),
                limit: args.limit.unwrap_or(0),
                page_token: args.page_token.unwrap_or_default(),
            };
            show(server, printer, Notifications::list_deliveries, list).await
        }
        ChannelCommand::RotateSecret { name, workspace } => {
            let rotate = proto::RotateChannelSecretRequest {
                workspace: workspace.unwrap_or_default(),
                name,
            };
            let rotated = server
                .call(Notifications::rotate_channel_secret, rotate)
                .await?;
            secret(printer, CreatedChannelView::rotated(rotated))
        }
    }
}

/// Prints a channel with its secret: the secret alone on stdout in a table (the rest on
/// stderr), everything in JSON.
fn secret(printer: &mut Printer<'_>, view: CreatedChannelView) -> Result<(), CliError> {
    if printer.format == OutputFormat::Table {
        printer.note(&view.notice())?;
    }
    printer.show(&view)
}

pub(super) async fn execute_reaction(
    command: ReactionCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        ReactionCommand::Add {
            on,
            channel,
            object,
            workspace,
        } => {
            let (kind, object) = object.kind_and_object();
            let add = proto::CreateReactionRequest {
                workspace: workspace.unwrap_or_default(),
                object_kind: kind.to_owned(),
                object,
                on: on.as_str().to_owned(),
                channel,
            };
            show(server, printer, Notifications::create_reaction, add).await
        }
        ReactionCommand::List {
            channel,
            object,
            workspace,
        } => {
            let (kind, object) = object.kind_and_object();
            let list = proto::ListReactionsRequest {
                workspace: workspace.unwrap_or_default(),
                object_kind: kind.to_owned(),
                object,
                channel: channel.unwrap_or_default(),
            };
            show(server, printer, Notifications::list_reactions, list).await
        }
        ReactionCommand::Remove { id, workspace } => {
            let remove = proto::DeleteReactionRequest {
                workspace: workspace.unwrap_or_default(),
                id: id.clone(),
            };
            server.call(Notifications::delete_reaction, remove).await?;
            printer.show(&DeletedView {
                kind: "reaction",
                id,
            })
        }
    }
}

fn create_request(args: ChannelCreateArgs) -> proto::CreateChannelRequest {
    use proto::create_channel_request::Settings;
    let settings = match args.url {
        Some(url) => Settings::Webhook(proto::WebhookSettings {
            url,
            headers: into_map(&args.headers),
            header_names: Vec::new(),
        }),
        None => Settings::Email(proto::EmailSettings {
            recipients: args.email,
            subject_prefix: args.subject_prefix.unwrap_or_default(),
        }),
    };
    proto::CreateChannelRequest {
        workspace: args.workspace.unwrap_or_default(),
        name: args.name,
        settings: Some(settings),
        event_types: args.events,
        disabled: args.disabled,
    }
}

fn update_request(args: ChannelUpdateArgs) -> Result<proto::UpdateChannelRequest, CliError> {
    let enabled = match (args.enable, args.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let request = proto::UpdateChannelRequest {
        workspace: args.workspace.unwrap_or_default(),
        name: args.name,
        enabled,
        disabled_reason: args.reason.unwrap_or_default(),
        set_event_types: args.no_events || !args.events.is_empty(),
        event_types: args.events,
        url: args.url,
        set_headers: args.no_headers || !args.headers.is_empty(),
        headers: into_map(&args.headers),
        recipients: args.email,
        subject_prefix: args.subject_prefix,
    };
    let changes_nothing = request.enabled.is_none()
        && !request.set_event_types
        && request.url.is_none()
        && !request.set_headers
        && request.recipients.is_empty()
        && request.subject_prefix.is_none();
    if changes_nothing {
        return Err(CliError::Usage(
            "channel update: say what to change (--enable, --disable, --events, --url, --header, --email, --subject-prefix, ...)".into(),
        ));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    #[test]
    fn create_sorts_flags_into_a_webhook_or_an_email_channel() {
        let Command::Channel(ChannelCommand::Create(args)) = parse(&[
            "channel",
            "create",
            "ops",
            "--url",
            "https://h.example/x",
            "--header",
            "X-K=v",
            "--events",
            "work_request.*",
        ])
        .command
        else {
            panic!("expected channel create");
        };
        let request = create_request(args);
        let Some(proto::create_channel_request::Settings::Webhook(w)) = request.settings else {
            panic!("expected a webhook");
        };
        assert_eq!(w.url, "https://h.example/x");
        assert_eq!(w.headers.get("X-K").map(String::as_str), Some("v"));
        assert_eq!(request.event_types, vec!["work_request.*".to_owned()]);
    }

    #[test]
    fn update_without_a_change_is_a_usage_error() {
        let Command::Channel(ChannelCommand::Update(args)) =
            parse(&["channel", "update", "ops"]).command
        else {
            panic!("expected channel update");
        };
        assert!(matches!(update_request(args), Err(CliError::Usage(_))));
        let Command::Channel(ChannelCommand::Update(args)) =
            parse(&["channel", "update", "ops", "--no-events"]).command
        else {
            panic!("expected channel update");
        };
        let request = update_request(args).expect("a change");
        assert!(request.set_event_types && request.event_types.is_empty());
    }
}
