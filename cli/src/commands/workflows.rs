//! `berth workflow ...`: submit a workflow file, keep workflow templates (`template
//! create|set|show|releases|rollback`) and run them (`run NAME[@vK] --param K=V`). Files
//! are read and checked by [`crate::workflow`] before connecting.

use std::collections::HashMap;
use std::path::Path;

use berth_common::proto;

use super::{Server, Templates, WorkRequests};
use crate::args::{WorkflowCommand, WorkflowTemplateCommand};
use crate::error::CliError;
use crate::output::{
    Printer, SubmittedView, WorkflowReleaseListView, WorkflowReleaseView, WorkflowTemplateView,
};
use crate::workflow::WorkflowFile;

const KIND: proto::TemplateKind = proto::TemplateKind::Workflow;

pub(super) async fn execute(
    command: WorkflowCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        WorkflowCommand::Submit(args) => {
            let (file, in_file) = read(&args.file)?;
            let request =
                crate::workflow::submit_request(&file, args.workspace.as_deref(), |key| {
                    std::env::var_os(key)
                })
                .map_err(in_file)?;
            let submitted = server.call(WorkRequests::submit_workflow, request).await?;
            printer.show(&SubmittedView::from(submitted))
        }
        WorkflowCommand::Template(command) => template(command, server, printer).await,
        WorkflowCommand::Run(args) => {
            let (name, version) = args.template;
            let request = proto::RunTemplateRequest {
                workspace: args.workspace.unwrap_or_default(),
                name,
                kind: KIND.into(),
                version,
                overrides: None,
                params: params(args.params)?,
            };
            let submitted = server.call(Templates::run_template, request).await?;
            printer.show(&SubmittedView::from(submitted))
        }
    }
}

/// Parameter values by name; a name given twice is a mistake worth pointing out.
fn params(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, CliError> {
    let mut values = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        if values.insert(key.clone(), value).is_some() {
            return Err(CliError::Usage(format!(
                "--param {key} is given twice; give each parameter once"
            )));
        }
    }
    Ok(values)
}

/// Reads and parses a workflow file; the second value prefixes an error with the file.
fn read(path: &Path) -> Result<(WorkflowFile, impl Fn(String) -> CliError + '_), CliError> {
    let text = super::read_text_file(path, super::MAX_REQUEST_FILE_BYTES, "workflow file")?;
    let in_file = move |e: String| CliError::Local(format!("{}: {e}", path.display()));
    let file = crate::workflow::parse(path, &text).map_err(in_file)?;
    Ok((file, in_file))
}

/// A template file's spec and workspace (`--workspace` beats the file's).
fn template_file(
    path: &Path,
    name: &str,
    workspace: Option<String>,
) -> Result<(proto::WorkflowTemplateSpec, String), CliError> {
    let (file, in_file) = read(path)?;
    let spec = crate::workflow::template_spec(&file, name, |key| std::env::var_os(key))
        .map_err(in_file)?;
    let workspace = workspace.or(file.workspace).unwrap_or_default();
    Ok((spec, workspace))
}

async fn template(
    command: WorkflowTemplateCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        WorkflowTemplateCommand::Create(args) => {
            let (spec, workspace) = template_file(&args.file, &args.name, args.workspace)?;
            let request = proto::CreateTemplateRequest {
                workspace,
                name: args.name,
                description: args.description.unwrap_or_default(),
                inactive: args.inactive,
                spec: Some(proto::create_template_request::Spec::Workflow(spec)),
                note: args.note.unwrap_or_default(),
            };
            let created = server.call(Templates::create_template, request).await?;
            printer.show(&WorkflowTemplateView::from(created))
        }
        WorkflowTemplateCommand::Set(args) => {
            let (spec, workspace) = template_file(&args.file, &args.name, args.workspace)?;
            let request = proto::UpdateTemplateRequest {
                workspace,
                name: args.name,
                kind: KIND.into(),
                expect_version: args.expect_version,
                description: None,
                active: None,
                change: Some(proto::update_template_request::Change::Workflow(spec)),
                note: args.note.unwrap_or_default(),
            };
            let updated = server.call(Templates::update_template, request).await?;
            printer.show(&WorkflowTemplateView::from(updated))
        }
        WorkflowTemplateCommand::Show(args) => {
            let (name, version) = args.template;
            let request = proto::GetReleaseRequest {
                workspace: args.workspace.unwrap_or_default(),
                name,
                kind: KIND.into(),
                version,
                diff_against: args.diff.unwrap_or(0),
            };
            let release = server.call(Templates::get_release, request).await?;
            printer.show(&WorkflowReleaseView::from(release))
        }
        WorkflowTemplateCommand::Releases(args) => {
            let request = proto::ListReleasesRequest {
                workspace: args.workspace.unwrap_or_default(),
                name: args.name,
                kind: KIND.into(),
                limit: args.limit.unwrap_or(0),
                before_version: 0,
            };
            let list = server.call(Templates::list_releases, request).await?;
            printer.show(&WorkflowReleaseListView::from(list))
        }
        WorkflowTemplateCommand::Rollback(args) => {
            let request = proto::RollbackTemplateRequest {
                workspace: args.workspace.unwrap_or_default(),
                name: args.name,
                kind: KIND.into(),
                version: args.version,
                expect_version: args.expect_version,
                note: args.note.unwrap_or_default(),
            };
            let rolled = server.call(Templates::rollback_template, request).await?;
            printer.show(&WorkflowTemplateView::from(rolled))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;
    use crate::args::tests::parse;

    fn workflow(line: &[&str]) -> WorkflowCommand {
        match parse(line).command {
            Command::Workflow(command) => command,
            other => panic!("expected workflow, got {other:?}"),
        }
    }

    #[test]
    fn workflow_run_takes_a_release_and_params() {
        let WorkflowCommand::Run(run) = workflow(&[
            "workflow",
            "run",
            "nightly@v2",
            "--param",
            "tag=1.37",
            "--param",
            "jobs=8",
        ]) else {
            panic!("expected run");
        };
        assert_eq!(run.template, ("nightly".to_owned(), 2));
        let values = params(run.params).expect("distinct");
        assert_eq!(values.get("tag").map(String::as_str), Some("1.37"));
        assert_eq!(values.get("jobs").map(String::as_str), Some("8"));
        let WorkflowCommand::Run(twice) =
            workflow(&["workflow", "run", "n", "--param", "a=1", "--param", "a=2"])
        else {
            panic!("expected run");
        };
        assert!(matches!(params(twice.params), Err(CliError::Usage(m)) if m.contains("--param a")));
    }

    #[test]
    fn workflow_template_commands_parse() {
        let WorkflowCommand::Template(WorkflowTemplateCommand::Show(show)) =
            workflow(&["workflow", "template", "show", "nightly@v3", "--diff", "v1"])
        else {
            panic!("expected show");
        };
        assert_eq!(show.template, ("nightly".to_owned(), 3));
        assert_eq!(show.diff, Some(1));
        let WorkflowCommand::Template(WorkflowTemplateCommand::Rollback(back)) =
            workflow(&["workflow", "template", "rollback", "nightly", "v2"])
        else {
            panic!("expected rollback");
        };
        assert_eq!((back.name.as_str(), back.version), ("nightly", 2));
        let WorkflowCommand::Template(WorkflowTemplateCommand::Set(set)) = workflow(&[
            "workflow",
            "template",
            "set",
            "nightly",
            "-f",
            "wf.yaml",
            "--expect-version",
            "4",
        ]) else {
            panic!("expected set");
        };
        assert_eq!(set.expect_version, Some(4));
    }
}
