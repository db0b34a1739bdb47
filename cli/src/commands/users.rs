//! `berth user ...`: create, list, show, disable, enable and delete users.

use berth_common::proto;

use super::{Server, Users, show};
use crate::args::UserCommand;
use crate::error::CliError;
use crate::output::{DeletedUserView, Printer};

pub(super) async fn execute(
    command: UserCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        UserCommand::Create { name, admin } => {
            let create = proto::CreateUserRequest { name, admin };
            show(server, printer, Users::create_user, create).await
        }
        UserCommand::List => {
            let list = proto::ListUsersRequest {};
            show(server, printer, Users::list_users, list).await
        }
        UserCommand::Get { name } => {
            // No name asks for the caller; the server knows who that is.
            let get = proto::GetUserRequest {
                name: name.unwrap_or_default(),
            };
            show(server, printer, Users::get_user, get).await
        }
        UserCommand::Disable { name } => {
            let disable = proto::DisableUserRequest { name };
            show(server, printer, Users::disable_user, disable).await
        }
        UserCommand::Enable { name } => {
            let enable = proto::EnableUserRequest { name };
            show(server, printer, Users::enable_user, enable).await
        }
        UserCommand::Delete { name } => {
            let delete = proto::DeleteUserRequest { name: name.clone() };
            // The answer is empty: what was deleted is what was asked for.
            server.call(Users::delete_user, delete).await?;
            printer.show(&DeletedUserView {
                name,
                deleted: true,
            })
        }
    }
}
