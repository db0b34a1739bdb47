//! `berth worker ...`: list and show workers, enable or disable them for new work,
//! drain them, and restrict them to some workspaces.

use berth_common::proto;

use super::{Server, Workers, show};
use crate::args::WorkerCommand;
use crate::error::CliError;
use crate::output::Printer;

pub(super) async fn execute(
    command: WorkerCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        WorkerCommand::List => {
            let list = proto::ListWorkersRequest {};
            show(server, printer, Workers::list_workers, list).await
        }
        WorkerCommand::Get { name } => {
            let get = proto::GetWorkerRequest { name };
            show(server, printer, Workers::get_worker, get).await
        }
        WorkerCommand::Enable { name } => {
            let enable = proto::EnableWorkerRequest { name };
            show(server, printer, Workers::enable_worker, enable).await
        }
        WorkerCommand::Disable { name } => {
            let disable = proto::DisableWorkerRequest { name };
            show(server, printer, Workers::disable_worker, disable).await
        }
        WorkerCommand::Drain { name } => {
            let drain = proto::DrainWorkerRequest { name };
            show(server, printer, Workers::drain_worker, drain).await
        }
        WorkerCommand::Restrict {
            name,
            workspaces,
            any,
        } => {
            // `--any` sends no workspace: the server reads that as every workspace.
            let workspaces = if any { Vec::new() } else { workspaces };
            let restrict = proto::RestrictWorkerRequest { name, workspaces };
            show(server, printer, Workers::restrict_worker, restrict).await
        }
    }
}
