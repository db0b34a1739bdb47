//! The commands on work requests: `run` (and, without `--detach`, following its log to
//! the job's exit status), `logs`, `get`, `list`, `cancel`, `unblock` and `retry`.

use std::ffi::OsString;

use berth_common::proto;

use super::{Interrupt, Server, Templates, WorkRequests, show};
use crate::args::{ListArgs, LogsArgs, OutputFormat, RunArgs, UnblockArg, UnblockArgs};
use crate::error::CliError;
use crate::follow::{self, EXIT_INTERRUPTED, LogTarget, Reconnect, RunEnd};
use crate::output::{Printer, SubmittedView, WorkRequestListView};
use crate::values::{into_map, networks_to_proto, resolve_secret_env, to_proto_duration};

/// `run`: submits what the command line describes; with `--detach` prints the id, else
/// follows the request to its end ([`run_attached`]).
pub(super) async fn run(
    args: RunArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    // A refused or failed submission means nothing was submitted, attached or not: the
    // same status (125) for both, so a script needs to know only one.
    let submitted = match &args.template {
        Some(template) => {
            let request = template_request(&args, template, |key| std::env::var_os(key))?;
            server
                .call(Templates::run_template, request)
                .await
                .map_err(CliError::while_running)?
        }
        None => {
            let request = submit_request(&args, |key| std::env::var_os(key))?;
            server
                .call(WorkRequests::submit_work_request, request)
                .await
                .map_err(CliError::while_running)?
        }
    };
    if args.detach {
        printer.show(&SubmittedView::from(submitted))?;
        return Ok(0);
    }
    run_attached(submitted, server, printer, interrupt)
        .await
        .map_err(CliError::while_running)
}

/// Splits `NAME`, `NAME@vK` or `NAME@K` (K from 1); 0 asks for the latest release.
fn template_reference(text: &str) -> Result<(String, u32), CliError> {
    let Some((name, version)) = text.split_once('@') else {
        return Ok((text.to_owned(), 0));
    };
    match version.strip_prefix('v').unwrap_or(version).parse::<u32>() {
        Ok(k) if k >= 1 && !name.is_empty() => Ok((name.to_owned(), k)),
        _ => Err(CliError::Usage(format!(
            "--template {text:?}: expected NAME or NAME@vK with K a release number from 1"
        ))),
    }
}

/// Builds the `RunTemplate` request `run --template` sends: the flags a run may
/// override, and the words after the options as the command (with a template there is
/// no image argument, so the first of them is the command's).
fn template_request(
    args: &RunArgs,
    template: &str,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::RunTemplateRequest, CliError> {
    let (name, version) = template_reference(template)?;
    let secret_env = resolve_secret_env(&args.secret_env, lookup).map_err(CliError::Usage)?;
    let command: Vec<String> = args
        .image
        .iter()
        .chain(args.command.iter())
        .cloned()
        .collect();
    Ok(proto::RunTemplateRequest {
        workspace: args.workspace.clone().unwrap_or_default(),
        name,
        kind: proto::TemplateKind::Job.into(),
        version,
        overrides: Some(proto::TemplateOverrides {
            command,
            env: into_map(&args.env),
            secret_env,
            memory_bytes: args.memory,
            cpus: args.cpus,
            timeout: args.timeout.map(to_proto_duration),
            priority: args.priority,
        }),
        params: Default::default(),
    })
}

/// `run` without `--detach`: submits, then writes the request's log as it comes and exits
/// with the job's status. Stdout carries the container's output and nothing else, in either
/// output format: a JSON object after it could not be told apart from it.
pub(super) async fn run_attached(
    submitted: proto::WorkRequest,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let mut client: WorkRequests = server.client().await?;
    let target = LogTarget {
        id: submitted.id,
        attempt: 0,
        follow: true,
    };
    let Some(ended) = write_log_until_interrupted(&mut client, &target, printer, interrupt).await
    else {
        printer.note(&format!(
            "stopped following; the work request goes on: berth logs -f {}\n",
            target.id
        ))?;
        return Ok(EXIT_INTERRUPTED);
    };
    let Some(request) = ended? else {
        return Err(CliError::Local(format!(
            "the log of work request {} ended without its result",
            target.id
        )));
    };
    match follow::run_exit_status(&request) {
        RunEnd::Exit(status) => Ok(status),
        RunEnd::Failed { status, message } => Err(CliError::Ended { status, message }),
    }
}

/// [`follow::write_log`] to the printer's stdout and stderr, or None once `interrupt`
/// resolves first. Stopping drops the call: the server sees the stream closed, and the
/// request goes on.
async fn write_log_until_interrupted(
    client: &mut WorkRequests,
    target: &LogTarget,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Option<Result<Option<proto::WorkRequest>, CliError>> {
    tokio::select! {
        biased;
        () = interrupt => None,
        ended = follow::write_log(
            client,
            target,
            Reconnect::default(),
            &mut *printer.out,
            &mut *printer.err,
        ) => Some(ended),
    }
}

/// `logs`: the log as stored (or, with `-f`, until the request is over), in any output
/// format: it is the container's bytes, not something to render.
pub(super) async fn logs(
    args: LogsArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let mut client: WorkRequests = server.client().await?;
    let target = LogTarget {
        id: args.id,
        attempt: args.attempt.unwrap_or(0),
        follow: args.follow,
    };
    match write_log_until_interrupted(&mut client, &target, printer, interrupt).await {
        // Ctrl-C is the ordinary way to stop `logs -f`; nothing to explain.
        None => Ok(EXIT_INTERRUPTED),
        Some(ended) => ended.map(|_| 0),
    }
}

/// Builds the request `run` submits. Bare `--secret-env KEY`s are looked up with `lookup`
/// (the process environment in real use).
fn submit_request(
    args: &RunArgs,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::SubmitWorkRequestRequest, CliError> {
    let secret_env = resolve_secret_env(&args.secret_env, lookup).map_err(CliError::Usage)?;
    let (network, networks) = networks_to_proto(&args.network);
    let spec = proto::ContainerSpec {
        ports: Vec::new(),
        image: args.image.clone().unwrap_or_default(),
        command: args.command.clone(),
        env: into_map(&args.env),
        secret_env,
        working_dir: args.workdir.clone().unwrap_or_default(),
        memory_bytes: args.memory,
        cpus: args.cpus,
        pids_limit: args.pids,
        timeout: args.timeout.map(to_proto_duration),
        network,
        pull_policy: args
            .pull
            .map_or(proto::PullPolicy::Unspecified, proto::PullPolicy::from)
            .into(),
        stop_grace_period: args.grace_period.map(to_proto_duration),
        networks,
    };
    let unblock = match (args.unblock, args.manual) {
        (Some(UnblockArg::Manual), _) | (None, true) => proto::UnblockStrategy::Manual,
        (Some(UnblockArg::Deps), _) => proto::UnblockStrategy::Deps,
        (None, false) => proto::UnblockStrategy::Unspecified,
    };
    Ok(proto::SubmitWorkRequestRequest {
        spec: Some(spec),
        requirements: into_map(&args.require),
        priority: args.priority.unwrap_or(0),
        workspace: args.workspace.clone().unwrap_or_default(),
        after: args.after.clone(),
        unblock: unblock.into(),
        allow_failure: args.allow_failure,
        retries: args.retries.unwrap_or(0),
        retry_backoff: args.retry_backoff.map(to_proto_duration),
        inputs: args
            .inputs
            .iter()
            .map(|input| proto::Input {
                artifact: input.artifact.clone(),
                mount: input.mount.clone(),
                from: String::new(),
            })
            .collect(),
        outputs: args
            .outputs
            .iter()
            .map(|output| proto::Output {
                path: output.path.clone(),
                when: if output.always {
                    proto::OutputWhen::Always
                } else {
                    proto::OutputWhen::Success
                }
                .into(),
            })
            .collect(),
        output_category: args.output_category.clone().unwrap_or_default(),
    })
}

pub(super) async fn get(
    id: String,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let get = proto::GetWorkRequestRequest { id };
    show(server, printer, WorkRequests::get_work_request, get).await
}

/// `list`: one page, and in a table a note on stderr when there is another.
pub(super) async fn list(
    args: ListArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let request = proto::ListWorkRequestsRequest {
        status: args
            .status
            .map_or(proto::WorkRequestStatus::Unspecified, From::from)
            .into(),
        workspace: args.workspace.unwrap_or_default(),
        page_size: args.limit.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    };
    let page = server
        .call(WorkRequests::list_work_requests, request)
        .await?;
    let view = WorkRequestListView::from(page);
    printer.show(&view)?;
    if printer.format == OutputFormat::Table && !view.next_page_token.is_empty() {
        printer.note(&format!(
            "more work requests: add --page-token {} for the next page\n",
            view.next_page_token
        ))?;
    }
    Ok(())
}

pub(super) async fn cancel(
    id: String,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let cancel = proto::CancelWorkRequestRequest { id };
    show(server, printer, WorkRequests::cancel_work_request, cancel).await
}

pub(super) async fn unblock(
    args: UnblockArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let unblock = proto::UnblockWorkRequestRequest {
        id: args.id,
        // clap requires exactly one of --accept and --reject.
        accept: args.accept && !args.reject,
    };
    show(server, printer, WorkRequests::unblock_work_request, unblock).await
}

pub(super) async fn retry(
    id: String,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let retry = proto::RetryWorkRequestRequest { id };
    show(server, printer, WorkRequests::retry_work_request, retry).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::tests::run_args;

    #[test]
    fn template_runs_send_only_overrides_and_the_command() {
        let args = run_args(&[
            "run",
            "--template",
            "build@v3",
            "--memory",
            "2G",
            "--env",
            "A=1",
            "--secret-env",
            "TOKEN",
            "--priority",
            "9",
            "--workspace",
            "team",
            "--",
            "make",
            "test",
        ]);
        let request = template_request(&args, "build@v3", |key| {
            (key == "TOKEN").then(|| OsString::from("s3cret"))
        })
        .expect("valid");
        assert_eq!((request.name.as_str(), request.version), ("build", 3));
        assert_eq!(request.workspace, "team");
        assert_eq!(request.kind, i32::from(proto::TemplateKind::Job));
        let overrides = request.overrides.expect("overrides");
        assert_eq!(overrides.command, ["make", "test"]);
        assert_eq!(overrides.memory_bytes, Some(2 << 30));
        assert_eq!(overrides.env["A"], "1");
        assert_eq!(overrides.secret_env["TOKEN"], "s3cret");
        assert_eq!(overrides.priority, Some(9));
        assert_eq!(overrides.cpus, None);
        let latest = run_args(&["run", "--template", "build"]);
        let request = template_request(&latest, "build", |_| None).expect("valid");
        assert_eq!(request.version, 0);
        assert_eq!(request.overrides.expect("overrides").priority, None);
        for bad in ["build@", "build@v0", "@v1", "build@x"] {
            assert!(template_reference(bad).is_err(), "{bad}");
        }
        assert_eq!(
            template_reference("b@7").expect("valid"),
            ("b".to_owned(), 7)
        );
    }

    #[test]
    fn networks_with_aliases_go_in_the_list() {
        let args = run_args(&[
            "run",
            "--network",
            "front:web",
            "--network",
            "back",
            "busybox",
        ]);
        let spec = submit_request(&args, |_| None)
            .expect("valid")
            .spec
            .expect("spec");
        assert_eq!(spec.network, "");
        assert_eq!(spec.networks.len(), 2);
        assert_eq!(spec.networks[0].aliases, ["web"]);
    }

    #[test]
    fn submit_request_carries_every_flag() {
        let args = run_args(&[
            "run",
            "busybox",
            "--env",
            "A=1",
            "--secret-env",
            "API_KEY",
            "--memory",
            "1G",
            "--cpus",
            "2",
            "--pids",
            "10",
            "--timeout",
            "5m",
            "--grace-period",
            "10s",
            "--network",
            "build",
            "--pull",
            "never",
            "--workdir",
            "/w",
            "--require",
            "arch=arm64",
            "--priority",
            "7",
            "--workspace",
            "team",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        let lookup = |key: &str| (key == "API_KEY").then(|| OsString::from("from-env"));
        let request = submit_request(&args, lookup).expect("valid");
        let spec = request.spec.expect("spec");
        assert_eq!(spec.image, "busybox");
        assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
        assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(
            spec.secret_env.get("API_KEY").map(String::as_str),
            Some("from-env")
        );
        assert_eq!(spec.memory_bytes, Some(1 << 30));
        assert_eq!(spec.cpus, Some(2.0));
        assert_eq!(spec.pids_limit, Some(10));
        assert_eq!(spec.timeout.map(|d| d.seconds), Some(300));
        assert_eq!(spec.stop_grace_period.map(|d| d.seconds), Some(10));
        assert_eq!(spec.network, "build");
        assert_eq!(spec.pull_policy, proto::PullPolicy::Never as i32);
        assert_eq!(spec.working_dir, "/w");
        assert_eq!(
            request.requirements.get("arch").map(String::as_str),
            Some("arm64")
        );
        assert_eq!(request.priority, 7);
        assert_eq!(request.workspace, "team");
        assert!(request.after.is_empty());
        assert_eq!(request.unblock, proto::UnblockStrategy::Unspecified as i32);
        assert_eq!(request.retries, 0);
        assert_eq!(request.retry_backoff, None);
    }

    #[test]
    fn submit_request_carries_dependencies_unblock_and_retries() {
        let args = run_args(&[
            "run",
            "--after",
            "a",
            "--after",
            "b",
            "--manual",
            "--allow-failure",
            "--retries",
            "2",
            "--retry-backoff",
            "3s",
            "busybox",
        ]);
        let request = submit_request(&args, |_| None).expect("valid");
        assert_eq!(request.after, ["a", "b"]);
        assert_eq!(request.unblock, proto::UnblockStrategy::Manual as i32);
        assert!(request.allow_failure);
        assert_eq!(request.retries, 2);
        assert_eq!(request.retry_backoff.map(|d| d.seconds), Some(3));
        let deps_args = run_args(&["run", "--unblock", "deps", "busybox"]);
        let deps = submit_request(&deps_args, |_| None).expect("valid");
        assert_eq!(deps.unblock, proto::UnblockStrategy::Deps as i32);
    }

    #[test]
    fn submit_request_carries_inputs_and_outputs() {
        let args = run_args(&[
            "run",
            "--input",
            "0190f5c2-8b1e-7c3a-9d4e-5f6a7b8c9d0e",
            "--input",
            "nightly/v1:2:pkgs",
            "--output",
            "dist/**",
            "--output",
            "report.xml:always",
            "--output",
            "a:b",
            "--output-category",
            "package",
            "-w",
            "/work",
            "busybox",
        ]);
        let request = submit_request(&args, |_| None).expect("valid");
        let inputs: Vec<(&str, &str)> = request
            .inputs
            .iter()
            .map(|i| (i.artifact.as_str(), i.mount.as_str()))
            .collect();
        assert_eq!(
            inputs,
            [
                ("0190f5c2-8b1e-7c3a-9d4e-5f6a7b8c9d0e", ""),
                ("nightly/v1:2", "pkgs")
            ]
        );
        let outputs: Vec<(&str, i32)> = request
            .outputs
            .iter()
            .map(|o| (o.path.as_str(), o.when))
            .collect();
        assert_eq!(
            outputs,
            [
                ("dist/**", proto::OutputWhen::Success as i32),
                ("report.xml", proto::OutputWhen::Always as i32),
                ("a:b", proto::OutputWhen::Success as i32),
            ]
        );
        assert_eq!(request.output_category, "package");
    }

    #[test]
    fn submit_request_leaves_unset_limits_to_the_server() {
        let request = submit_request(&run_args(&["run", "busybox"]), |_| None).expect("valid");
        let spec = request.spec.expect("spec");
        assert_eq!(spec.memory_bytes, None);
        assert_eq!(spec.cpus, None);
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.pull_policy, proto::PullPolicy::Unspecified as i32);
        assert!(spec.command.is_empty());
        assert_eq!(request.workspace, "");
    }

    #[test]
    fn missing_secret_env_variable_is_a_usage_error() {
        let args = run_args(&["run", "busybox", "--secret-env", "NOT_SET_ANYWHERE"]);
        let error = submit_request(&args, |_| None).expect_err("should fail");
        assert_eq!(error.exit_status(), 2);
        assert_eq!(
            error.to_string(),
            "--secret-env NOT_SET_ANYWHERE: environment variable NOT_SET_ANYWHERE is not set"
        );
    }
}
