//! `berth workspace ...`: create, list, show, configure and archive workspaces, and
//! manage their members.

use berth_common::proto;

use super::{Server, Workspaces, show};
use crate::args::{MemberCommand, WorkspaceCommand, WorkspaceCreateArgs, WorkspaceSetArgs};
use crate::error::CliError;
use crate::output::{Printer, RemovedMemberView};
use crate::values::{Setting, to_proto_duration};

pub(super) async fn execute(
    command: WorkspaceCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        WorkspaceCommand::Create(args) => {
            let create = create_request(args);
            show(server, printer, Workspaces::create_workspace, create).await
        }
        WorkspaceCommand::List { all } => {
            let list = proto::ListWorkspacesRequest {
                include_archived: all,
            };
            show(server, printer, Workspaces::list_workspaces, list).await
        }
        WorkspaceCommand::Get { name } => {
            let get = proto::GetWorkspaceRequest { name };
            show(server, printer, Workspaces::get_workspace, get).await
        }
        WorkspaceCommand::Set(args) => {
            let update = update_request(args);
            show(server, printer, Workspaces::update_workspace, update).await
        }
        WorkspaceCommand::Archive { name } => {
            let archive = proto::ArchiveWorkspaceRequest { name };
            show(server, printer, Workspaces::archive_workspace, archive).await
        }
        WorkspaceCommand::Member(command) => member(command, server, printer).await,
    }
}

async fn member(
    command: MemberCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        MemberCommand::Add {
            workspace,
            user,
            role,
        } => {
            let add = proto::AddMemberRequest {
                workspace,
                user,
                role: proto::WorkspaceRole::from(role).into(),
            };
            show(server, printer, Workspaces::add_member, add).await
        }
        MemberCommand::Rm { workspace, user } => {
            let remove = proto::RemoveMemberRequest {
                workspace: workspace.clone(),
                user: user.clone(),
            };
            // The answer is empty: what was removed is what was asked for.
            server.call(Workspaces::remove_member, remove).await?;
            printer.show(&RemovedMemberView {
                workspace,
                user,
                removed: true,
            })
        }
        MemberCommand::List { workspace } => {
            let list = proto::ListMembersRequest { workspace };
            show(server, printer, Workspaces::list_members, list).await
        }
    }
}

fn create_request(args: WorkspaceCreateArgs) -> proto::CreateWorkspaceRequest {
    proto::CreateWorkspaceRequest {
        name: args.name,
        public: args.public,
        default_expiry: args.default_expiry.map(to_proto_duration),
    }
}

/// A value and whether to clear it, as the protocol carries a setting.
fn split<T, U>(setting: Option<Setting<T>>, convert: impl FnOnce(T) -> U) -> (Option<U>, bool) {
    match setting {
        None => (None, false),
        Some(Setting::Set(value)) => (Some(convert(value)), false),
        Some(Setting::Clear) => (None, true),
    }
}

fn update_request(args: WorkspaceSetArgs) -> proto::UpdateWorkspaceRequest {
    let (default_expiry, clear_default_expiry) = split(args.default_expiry, to_proto_duration);
    let (max_running, clear_max_running) = split(args.max_running, |n| n);
    let (max_pending, clear_max_pending) = split(args.max_pending, |n| n);
    proto::UpdateWorkspaceRequest {
        name: args.name,
        public: args.public,
        default_expiry,
        clear_default_expiry,
        max_running,
        clear_max_running,
        max_pending,
        clear_max_pending,
        weight: args.weight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    #[test]
    fn workspace_set_maps_values_and_clearing_words_to_the_request() {
        let Command::Workspace(WorkspaceCommand::Set(args)) = parse(&[
            "workspace",
            "set",
            "team-a",
            "--default-expiry",
            "never",
            "--max-running",
            "3",
            "--max-pending",
            "none",
        ])
        .command
        else {
            panic!("expected workspace set");
        };
        let request = update_request(args);
        assert_eq!(request.name, "team-a");
        assert!(request.default_expiry.is_none() && request.clear_default_expiry);
        assert_eq!(request.max_running, Some(3));
        assert!(!request.clear_max_running);
        assert!(request.max_pending.is_none() && request.clear_max_pending);
        assert_eq!(request.public, None);
        assert_eq!(request.weight, None);
    }

    #[test]
    fn workspace_create_maps_public_and_expiry() {
        let Command::Workspace(WorkspaceCommand::Create(args)) = parse(&[
            "workspace",
            "create",
            "team-a",
            "--public",
            "--default-expiry",
            "2h",
        ])
        .command
        else {
            panic!("expected workspace create");
        };
        let request = create_request(args);
        assert!(request.public);
        assert_eq!(request.default_expiry.map(|d| d.seconds), Some(7200));
    }
}
