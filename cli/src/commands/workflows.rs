//! `berth workflow ...`: submit a workflow file (read and checked by [`crate::workflow`]
//! before connecting).

use super::{Server, WorkRequests};
use crate::args::WorkflowCommand;
use crate::error::CliError;
use crate::output::{Printer, SubmittedView};

pub(super) async fn execute(
    command: WorkflowCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        WorkflowCommand::Submit(args) => {
            let text =
                super::read_text_file(&args.file, super::MAX_REQUEST_FILE_BYTES, "workflow file")?;
            let in_file = |e: String| CliError::Local(format!("{}: {e}", args.file.display()));
            let file = crate::workflow::parse(&args.file, &text).map_err(in_file)?;
            let request =
                crate::workflow::submit_request(&file, args.workspace.as_deref(), |key| {
                    std::env::var_os(key)
                })
                .map_err(in_file)?;
            let submitted = server.call(WorkRequests::submit_workflow, request).await?;
            printer.show(&SubmittedView::from(submitted))
        }
    }
}
