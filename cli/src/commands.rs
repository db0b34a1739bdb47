//! The commands: each builds its request from the parsed arguments, calls the server and
//! prints the answer through a [`Printer`].
//!
//! Everything that can be checked without the server (the token, secret environment
//! variables) is checked before connecting, so a usage mistake is reported as such even
//! when the server is down. Building requests is kept apart from sending them
//! ([`submit_request`]) so it can be tested without a server.
//!
//! Commands return the process exit status: 0, except for the two that follow a log
//! ([`crate::follow`]): `run` without `--detach` ends with the job's status, and both end
//! with 130 when stopped with Ctrl-C.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use berth_common::client::{self, BearerAuth};
use berth_common::proto;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::worker_service_client::WorkerServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::args::{
    Cli, Command, GlobalArgs, ListArgs, LogsArgs, OutputFormat, PriorityArgs, QueueArgs, RunArgs,
    TokenCommand, TokenCreateArgs, UnblockArg, UnblockArgs, WorkerCommand, WorkflowCommand,
};
use crate::error::CliError;
use crate::follow::{self, EXIT_INTERRUPTED, LogTarget, Reconnect, RunEnd};
use crate::output::{
    CreatedTokenView, DeletedTokenView, Printer, QueueView, SubmittedView, TokenListView,
    TokenView, WorkRequestListView, WorkRequestView, WorkerListView, WorkerView,
};
use crate::values::{PriorityChange, into_map, resolve_secret_env, to_proto_duration};

/// Resolves when the person at the terminal asks to stop (Ctrl-C in real use). Only
/// commands that follow a log wait for it.
pub type Interrupt<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

/// Runs a parsed command line and returns its exit status.
pub async fn execute(
    cli: Cli,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let server = Server {
        token: resolve_token(&cli.global)?,
        url: cli.global.server,
        ca_cert: cli.global.ca_cert,
    };
    let done = match cli.command {
        Command::Token(command) => token(command, &server, printer).await,
        Command::Worker(command) => worker(command, &server, printer).await,
        Command::Run(args) => return run(args, &server, printer, interrupt).await,
        Command::Get { id } => get(id, &server, printer).await,
        Command::Logs(args) => return logs(args, &server, printer, interrupt).await,
        Command::List(args) => list(args, &server, printer).await,
        Command::Cancel { id } => cancel(id, &server, printer).await,
        Command::Unblock(args) => unblock(args, &server, printer).await,
        Command::Retry { id } => retry(id, &server, printer).await,
        Command::Priority(args) => priority(args, &server, printer).await,
        Command::Queue(args) => queue(args, &server, printer).await,
        Command::Workflow(command) => workflow(command, &server, printer).await,
    };
    done.map(|()| 0)
}

/// Picks the token: `--token` or `--token-file` on the command line, else BERTH_TOKEN.
/// A token file beats BERTH_TOKEN because naming a file is the more deliberate act; giving
/// both flags is a mistake worth pointing out.
pub fn resolve_token(global: &GlobalArgs) -> Result<String, CliError> {
    let explicit_token = global.token.is_some() && !global.token_from_env;
    if let Some(path) = &global.token_file {
        if explicit_token {
            return Err(CliError::Usage(
                "--token and --token-file cannot be used together".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Local(format!("cannot read token file {}: {e}", path.display()))
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(CliError::Local(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        return Ok(token.to_owned());
    }
    match global.token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err(CliError::Usage(
            "no token: pass --token, --token-file or set BERTH_TOKEN".into(),
        )),
    }
}

/// What is needed to reach the server. Deliberately not `Debug`: it holds the token.
struct Server {
    url: String,
    ca_cert: Option<PathBuf>,
    token: String,
}

impl Server {
    /// Connects now, so an unreachable server is reported as such rather than as a failed
    /// call.
    async fn connect(&self) -> Result<Connection, CliError> {
        let channel = client::connect(&self.url, self.ca_cert.as_deref())
            .await
            .map_err(CliError::from_connect)?;
        Ok(Connection {
            channel,
            auth: BearerAuth::new(&self.token),
        })
    }
}

/// A channel whose calls carry the bearer token.
pub type Authenticated = InterceptedService<Channel, BearerAuth>;

/// An open channel and the token every call carries.
struct Connection {
    channel: Channel,
    auth: BearerAuth,
}

impl Connection {
    fn tokens(&self) -> TokenServiceClient<Authenticated> {
        TokenServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    fn workers(&self) -> WorkerServiceClient<Authenticated> {
        WorkerServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    fn work_requests(&self) -> WorkRequestServiceClient<Authenticated> {
        WorkRequestServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
}

// ----- berth token -----

async fn token(
    command: TokenCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let mut tokens = server.connect().await?.tokens();
    match command {
        TokenCommand::Create(args) => {
            let response = tokens
                .create_token(create_token_request(args))
                .await?
                .into_inner();
            let view = CreatedTokenView::from(response);
            if printer.format == OutputFormat::Table {
                printer.note(&view.notice())?;
            }
            printer.show(&view)
        }
        TokenCommand::List => {
            let response = tokens
                .list_tokens(proto::ListTokensRequest {})
                .await?
                .into_inner();
            printer.show(&TokenListView::from(response))
        }
        TokenCommand::Enable { id } => {
            let info = tokens
                .enable_token(proto::EnableTokenRequest { id })
                .await?
                .into_inner();
            printer.show(&TokenView::from(info))
        }
        TokenCommand::Disable { id } => {
            let info = tokens
                .disable_token(proto::DisableTokenRequest { id })
                .await?
                .into_inner();
            printer.show(&TokenView::from(info))
        }
        TokenCommand::Delete { id } => {
            tokens
                .delete_token(proto::DeleteTokenRequest { id: id.clone() })
                .await?;
            printer.show(&DeletedTokenView { id, deleted: true })
        }
    }
}

fn create_token_request(args: TokenCreateArgs) -> proto::CreateTokenRequest {
    proto::CreateTokenRequest {
        role: proto::Role::from(args.role).into(),
        name: args.name.unwrap_or_default(),
        comment: args.comment.unwrap_or_default(),
        expires_in: args.expires_in.map(to_proto_duration),
    }
}

// ----- berth worker -----

async fn worker(
    command: WorkerCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let mut workers = server.connect().await?.workers();
    let worker = match command {
        WorkerCommand::List => {
            let response = workers
                .list_workers(proto::ListWorkersRequest {})
                .await?
                .into_inner();
            return printer.show(&WorkerListView::from(response));
        }
        WorkerCommand::Get { name } => workers.get_worker(proto::GetWorkerRequest { name }).await,
        WorkerCommand::Enable { name } => {
            workers
                .enable_worker(proto::EnableWorkerRequest { name })
                .await
        }
        WorkerCommand::Disable { name } => {
            workers
                .disable_worker(proto::DisableWorkerRequest { name })
                .await
        }
        WorkerCommand::Drain { name } => {
            workers
                .drain_worker(proto::DrainWorkerRequest { name })
                .await
        }
    }?
    .into_inner();
    printer.show(&WorkerView::from(worker))
}

// ----- berth workflow -----

async fn workflow(
    command: WorkflowCommand,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    match command {
        WorkflowCommand::Submit(args) => {
            let text = std::fs::read_to_string(&args.file).map_err(|e| {
                CliError::Local(format!("cannot read {}: {e}", args.file.display()))
            })?;
            let in_file = |e: String| CliError::Local(format!("{}: {e}", args.file.display()));
            let file = crate::workflow::parse(&args.file, &text).map_err(in_file)?;
            let request =
                crate::workflow::submit_request(&file, args.workspace.as_deref(), |key| {
                    std::env::var_os(key)
                })
                .map_err(in_file)?;
            let submitted = server
                .connect()
                .await?
                .work_requests()
                .submit_workflow(request)
                .await?
                .into_inner();
            printer.show(&SubmittedView::from(submitted))
        }
    }
}

// ----- berth run / logs / get / list / cancel -----

async fn run(
    args: RunArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let request = submit_request(&args, |key| std::env::var_os(key))?;
    if args.detach {
        let submitted = server
            .connect()
            .await?
            .work_requests()
            .submit_work_request(request)
            .await?
            .into_inner();
        printer.show(&SubmittedView::from(submitted))?;
        return Ok(0);
    }
    run_attached(request, server, printer, interrupt)
        .await
        .map_err(CliError::while_running)
}

/// `run` without `--detach`: submits, then writes the request's log as it comes and exits
/// with the job's status. Stdout carries the container's output and nothing else, in either
/// output format: a JSON object after it could not be told apart from it.
async fn run_attached(
    request: proto::SubmitWorkRequestRequest,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let connection = server.connect().await?;
    let mut client = connection.work_requests();
    let submitted = client.submit_work_request(request).await?.into_inner();
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
    client: &mut WorkRequestServiceClient<Authenticated>,
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
async fn logs(
    args: LogsArgs,
    server: &Server,
    printer: &mut Printer<'_>,
    interrupt: Interrupt<'_>,
) -> Result<u8, CliError> {
    let mut client = server.connect().await?.work_requests();
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
pub fn submit_request(
    args: &RunArgs,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<proto::SubmitWorkRequestRequest, CliError> {
    let secret_env = resolve_secret_env(&args.secret_env, lookup).map_err(CliError::Usage)?;
    let spec = proto::ContainerSpec {
        image: args.image.clone(),
        command: args.command.clone(),
        env: into_map(&args.env),
        secret_env,
        working_dir: args.workdir.clone().unwrap_or_default(),
        memory_bytes: args.memory,
        cpus: args.cpus,
        pids_limit: args.pids,
        timeout: args.timeout.map(to_proto_duration),
        network: args.network.clone().unwrap_or_default(),
        pull_policy: args
            .pull
            .map_or(proto::PullPolicy::Unspecified, proto::PullPolicy::from)
            .into(),
        stop_grace_period: args.grace_period.map(to_proto_duration),
    };
    let unblock = match (args.unblock, args.manual) {
        (Some(UnblockArg::Manual), _) | (None, true) => proto::UnblockStrategy::Manual,
        (Some(UnblockArg::Deps), _) => proto::UnblockStrategy::Deps,
        (None, false) => proto::UnblockStrategy::Unspecified,
    };
    Ok(proto::SubmitWorkRequestRequest {
        spec: Some(spec),
        requirements: into_map(&args.require),
        priority: args.priority,
        workspace: args.workspace.clone().unwrap_or_default(),
        after: args.after.clone(),
        unblock: unblock.into(),
        allow_failure: args.allow_failure,
        retries: args.retries.unwrap_or(0),
        retry_backoff: args.retry_backoff.map(to_proto_duration),
    })
}

async fn get(id: String, server: &Server, printer: &mut Printer<'_>) -> Result<(), CliError> {
    let request = server
        .connect()
        .await?
        .work_requests()
        .get_work_request(proto::GetWorkRequestRequest { id })
        .await?
        .into_inner();
    printer.show(&WorkRequestView::from(request))
}

async fn list(args: ListArgs, server: &Server, printer: &mut Printer<'_>) -> Result<(), CliError> {
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
        .connect()
        .await?
        .work_requests()
        .list_work_requests(request)
        .await?
        .into_inner();
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

// ----- berth unblock / retry -----

async fn unblock(
    args: UnblockArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let request = server
        .connect()
        .await?
        .work_requests()
        .unblock_work_request(proto::UnblockWorkRequestRequest {
            id: args.id,
            // clap requires exactly one of --accept and --reject.
            accept: args.accept && !args.reject,
        })
        .await?
        .into_inner();
    printer.show(&WorkRequestView::from(request))
}

async fn retry(id: String, server: &Server, printer: &mut Printer<'_>) -> Result<(), CliError> {
    let request = server
        .connect()
        .await?
        .work_requests()
        .retry_work_request(proto::RetryWorkRequestRequest { id })
        .await?
        .into_inner();
    printer.show(&WorkRequestView::from(request))
}

async fn cancel(id: String, server: &Server, printer: &mut Printer<'_>) -> Result<(), CliError> {
    let request = server
        .connect()
        .await?
        .work_requests()
        .cancel_work_request(proto::CancelWorkRequestRequest { id })
        .await?
        .into_inner();
    printer.show(&WorkRequestView::from(request))
}

// ----- berth priority / queue -----

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

async fn priority(
    args: PriorityArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let request = server
        .connect()
        .await?
        .work_requests()
        .adjust_priority(adjust_priority_request(args))
        .await?
        .into_inner();
    printer.show(&WorkRequestView::from(request))
}

async fn queue(
    args: QueueArgs,
    server: &Server,
    printer: &mut Printer<'_>,
) -> Result<(), CliError> {
    let response = server
        .connect()
        .await?
        .work_requests()
        .list_queue(proto::ListQueueRequest {
            workspace: args.workspace.unwrap_or_default(),
            limit: args.limit.unwrap_or(0),
        })
        .await?
        .into_inner();
    printer.show(&QueueView::from(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(line: &[&str]) -> Cli {
        let args = std::iter::once("berth").chain(line.iter().copied());
        match Cli::parse_args(args) {
            Ok(cli) => cli,
            Err(e) => panic!("{line:?} should parse: {e}"),
        }
    }

    fn run_args(line: &[&str]) -> RunArgs {
        match cli(line).command {
            Command::Run(args) => args,
            other => panic!("expected run, got {other:?}"),
        }
    }

    /// A token file under the system's temp directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &str) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("berth-cli-test-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).expect("write temp file");
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn global(token: Option<&str>, from_env: bool, file: Option<&TempFile>) -> GlobalArgs {
        GlobalArgs {
            server: crate::args::DEFAULT_SERVER.into(),
            token: token.map(str::to_owned),
            token_file: file.map(|f| f.0.clone()),
            ca_cert: None,
            output: OutputFormat::Table,
            token_from_env: from_env,
        }
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

    #[test]
    fn priority_changes_become_delta_or_set() {
        let request = |text: &str| match cli(&["priority", "id1", text]).command {
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

    #[test]
    fn token_create_maps_name_comment_and_expiry() {
        let Command::Token(TokenCommand::Create(args)) = cli(&[
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

    #[test]
    fn token_comes_from_flag_or_environment_trimmed() {
        let token =
            resolve_token(&global(Some(" berth_usr_x\n"), false, None)).expect("should succeed");
        assert_eq!(token, "berth_usr_x");
        let token =
            resolve_token(&global(Some("berth_usr_env"), true, None)).expect("should succeed");
        assert_eq!(token, "berth_usr_env");
    }

    #[test]
    fn token_file_is_read_trimmed_and_beats_the_environment() {
        let file = TempFile::new("token", "berth_adm_file\n");
        let token = resolve_token(&global(Some("berth_usr_env"), true, Some(&file)))
            .expect("should succeed");
        assert_eq!(token, "berth_adm_file");
    }

    #[test]
    fn token_flag_and_token_file_together_are_refused() {
        let file = TempFile::new("both", "berth_adm_file");
        let error = resolve_token(&global(Some("berth_usr_x"), false, Some(&file)))
            .expect_err("should fail");
        assert_eq!(error.exit_status(), 2);
    }

    #[test]
    fn no_token_at_all_says_how_to_give_one() {
        for global in [global(None, false, None), global(Some("  "), true, None)] {
            let error = resolve_token(&global).expect_err("should fail");
            assert_eq!(
                error.to_string(),
                "no token: pass --token, --token-file or set BERTH_TOKEN"
            );
        }
    }

    #[test]
    fn unreadable_or_empty_token_file_is_an_error() {
        let empty = TempFile::new("empty", " \n");
        let error = resolve_token(&global(None, false, Some(&empty))).expect_err("should fail");
        assert!(error.to_string().contains("is empty"), "{error}");
        let missing = GlobalArgs {
            token_file: Some(PathBuf::from("/nonexistent/berth-token")),
            ..global(None, false, None)
        };
        let error = resolve_token(&missing).expect_err("should fail");
        assert!(
            error
                .to_string()
                .starts_with("cannot read token file /nonexistent/berth-token:"),
            "{error}"
        );
    }
}
