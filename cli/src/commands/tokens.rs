//! `berth token ...`: create, list, enable, disable and delete API tokens.

use berth_common::proto;

use super::{Server, Tokens, show};
use crate::args::{OutputFormat, TokenCommand, TokenCreateArgs};
use crate::error::CliError;
use crate::output::{CreatedTokenView, DeletedTokenView, Printer};
use crate::values::to_proto_duration;

pub(super) async fn execute(
    command: TokenCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        TokenCommand::Create(args) => create(args, server, printer).await,
        TokenCommand::List => {
            let list = proto::ListTokensRequest {};
            show(server, printer, Tokens::list_tokens, list).await
        }
        TokenCommand::Enable { id } => {
            let enable = proto::EnableTokenRequest { id };
            show(server, printer, Tokens::enable_token, enable).await
        }
        TokenCommand::Disable { id } => {
            let disable = proto::DisableTokenRequest { id };
            show(server, printer, Tokens::disable_token, disable).await
        }
        TokenCommand::Delete { id } => {
            let delete = proto::DeleteTokenRequest { id: id.clone() };
            // The answer is empty: what was deleted is what was asked for.
            server.call(Tokens::delete_token, delete).await?;
            printer.show(&DeletedTokenView { id, deleted: true })
        }
    }
}

/// `token create`: in a table, only the secret goes to stdout, so `berth token create ... >
/// file` makes a token file; what was created, and that the secret is shown only this
/// once, go to stderr.
async fn create(
    args: TokenCreateArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let created = server
        .call(Tokens::create_token, create_token_request(args))
        .await?;
    let view = CreatedTokenView::from(created);
    if printer.format == OutputFormat::Table {
        printer.note(&view.notice())?;
    }
    printer.show(&view)
}

fn create_token_request(args: TokenCreateArgs) -> proto::CreateTokenRequest {
    proto::CreateTokenRequest {
        role: proto::Role::from(args.role).into(),
        name: args.name.unwrap_or_default(),
        comment: args.comment.unwrap_or_default(),
        expires_in: args.expires_in.map(to_proto_duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    #[test]
    fn token_create_maps_name_comment_and_expiry() {
        let Command::Token(TokenCommand::Create(args)) = parse(&[
            "token",
            "create",
            "--role",
            "user",
            "--name",
            "alice",
            "--expires-in",
            "1h",
        ])
        .command
        else {
            panic!("expected token create");
        };
        let request = create_token_request(args);
        assert_eq!(request.role, proto::Role::User as i32);
        assert_eq!(request.name, "alice");
        assert_eq!(request.comment, "");
        assert_eq!(request.expires_in.map(|d| d.seconds), Some(3600));
    }
}
