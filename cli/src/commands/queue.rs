//! `berth queue` (the pending queue in the order requests will be offered, and why each
//! waits) and `berth priority` (moving a request in it).

use berth_common::proto;

use super::{Server, WorkRequests, show};
use crate::args::{PriorityArgs, QueueArgs};
use crate::error::CliError;
use crate::output::Printer;
use crate::values::PriorityChange;

pub(super) async fn queue(
    args: QueueArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let list = proto::ListQueueRequest {
        workspace: args.workspace.unwrap_or_default(),
        limit: args.limit.unwrap_or(0),
    };
    show(server, printer, WorkRequests::list_queue, list).await
}

pub(super) async fn priority(
    args: PriorityArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let adjust = adjust_priority_request(args);
    show(server, printer, WorkRequests::adjust_priority, adjust).await
}

/// The AdjustPriority call for a parsed `berth priority`.
fn adjust_priority_request(args: PriorityArgs) -> proto::AdjustPriorityRequest {
    let (delta, set) = match args.change {
        PriorityChange::Add(delta) => (delta, None),
        PriorityChange::Set(value) => (0, Some(value)),
    };
    proto::AdjustPriorityRequest {
        id: args.id,
        delta,
        set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    #[test]
    fn priority_changes_become_delta_or_set() {
        let request = |text: &str| match parse(&["priority", "id1", text]).command {
            Command::Priority(args) => adjust_priority_request(args),
            other => panic!("expected priority, got {other:?}"),
        };
        let add = request("-5");
        assert_eq!((add.id.as_str(), add.delta, add.set), ("id1", -5, None));
        let set = request("12");
        assert_eq!((set.delta, set.set), (0, Some(12)));
        let set = request("=0");
        assert_eq!(set.set, Some(0));
    }
}
