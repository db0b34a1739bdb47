//! The commands: each builds its request from the parsed arguments, calls the server and
//! prints the answer through a [`Printer`].
//!
//! Most commands are one call whose answer is printed as its view, and [`show`] is that
//! shape: such a command builds its request and names the method, and nothing else. The
//! commands that do more say so in their own code: `run` and `logs` follow a log
//! ([`crate::follow`]), `list` points at the next page, `token create` warns that the
//! secret is shown only once, and a submission prints only its id. They use the same
//! [`Server::call`] or [`Server::client`].
//!
//! One module per resource, as in [`crate::output`]: `tokens`, `users`, `workspaces`,
//! `workers`,
//! `work_requests` (`run`, `logs`, `get`, `list`, `cancel`, `unblock`, `retry`), `queue`
//! (`queue`, `priority`), `workflows` (`workflow submit`, `workflow template ...`,
//! `workflow run`), `artifacts` (`artifact ...`: create with resumable uploads, download
//! with verification), `collections`, `templates` (`template ...`), `services` (`service ...`), `triggers` (`trigger ...`), `notifications` (`channel ...`, `reaction ...`) and
//! `topics` (`topic ...`, `subscription ...`). This module
//! dispatches, finds the token and
//! reaches the server.
//!
//! Everything that can be checked without the server (the token, secret environment
//! variables, a workflow file) is checked before connecting, so a usage mistake is
//! reported as such even when the server is down. Building requests is kept apart from
//! sending them (`submit_request`, say) so it can be tested without a server.
//!
//! Commands return the process exit status: 0, except for the two that follow a log:
//! `run` without `--detach` ends with the job's status, and both end with 130 when stopped
//! with Ctrl-C.

mod artifacts;
mod collections;
mod notifications;
mod queue;
mod services;
mod templates;
mod tokens;
mod topics;
mod triggers;
mod users;
mod work_requests;
mod workers;
mod workflows;
mod workspaces;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use berth_common::client::{self, BearerAuth};
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::user_service_client::UserServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::worker_service_client::WorkerServiceClient;
use berth_common::proto::workspace_service_client::WorkspaceServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Response, Status};

use crate::args::{Cli, Command, GlobalArgs};
use crate::error::CliError;
use crate::output::{Answer, Printer};

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
    let server = &server;
    let done = match cli.command {
        Command::Token(command) => tokens::execute(command, server, printer).await,
        Command::Worker(command) => workers::execute(command, server, printer).await,
        Command::User(command) => users::execute(command, server, printer).await,
        Command::Workspace(command) => workspaces::execute(command, server, printer).await,
        Command::Artifact(command) => artifacts::execute(command, server, printer).await,
        Command::Collection(command) => collections::execute(command, server, printer).await,
        Command::Template(command) => templates::execute(command, server, printer).await,
        Command::Service(command) => {
            return services::execute(command, server, printer, interrupt).await;
        }
        Command::Trigger(command) => triggers::execute(command, server, printer).await,
        Command::Channel(command) => notifications::execute_channel(command, server, printer).await,
        Command::Reaction(command) => {
            notifications::execute_reaction(command, server, printer).await
        }
        Command::Topic(command) => {
            return topics::execute_topic(command, server, printer, interrupt).await;
        }
        Command::Subscription(command) => {
            topics::execute_subscription(command, server, printer).await
        }
        Command::Run(args) => return work_requests::run(args, server, printer, interrupt).await,
        Command::Get { id } => work_requests::get(id, server, printer).await,
        Command::Logs(args) => return work_requests::logs(args, server, printer, interrupt).await,
        Command::List(args) => work_requests::list(args, server, printer).await,
        Command::Cancel { id } => work_requests::cancel(id, server, printer).await,
        Command::Unblock(args) => work_requests::unblock(args, server, printer).await,
        Command::Retry { id } => work_requests::retry(id, server, printer).await,
        Command::Priority(args) => queue::priority(args, server, printer).await,
        Command::Queue(args) => queue::queue(args, server, printer).await,
        Command::Workflow(command) => workflows::execute(command, server, printer).await,
    };
    done.map(|()| 0)
}

/// The largest token file read: a token is well under 1 KiB, so anything near this is
/// the wrong file.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The largest file sent to the server in one request: the server's limit per message
/// (4 MiB), so an oversized file is refused here, before it is read whole.
pub(crate) const MAX_REQUEST_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the UTF-8 text file `path` (a `what`, for the message), refusing one over `limit`
/// bytes without reading more than that (its size is checked first, and the read stops
/// past the limit for files whose size says nothing, such as pipes).
pub(crate) fn read_text_file(path: &Path, limit: u64, what: &str) -> Result<String, CliError> {
    use std::io::Read;
    let cannot =
        |e: std::io::Error| CliError::Local(format!("cannot read {what} {}: {e}", path.display()));
    let too_large = || {
        CliError::Local(format!(
            "{what} {} is larger than {}; the limit is {limit} bytes",
            path.display(),
            human_bytes(limit)
        ))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    if file.metadata().map_err(cannot)?.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::Local(format!("{what} {} is not UTF-8 text", path.display())))
}

/// `n` bytes as KiB or MiB, for messages about limits.
fn human_bytes(n: u64) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else {
        format!("{} KiB", n / 1024)
    }
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
        let text = read_text_file(path, MAX_TOKEN_FILE_BYTES, "token file")?;
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
    /// A client of one service, on a new connection. It connects now, so an unreachable
    /// server is reported as such rather than as a failed call.
    async fn client<S: Service>(&self) -> Result<S, CliError> {
        let channel = client::connect(&self.url, self.ca_cert.as_deref())
            .await
            .map_err(CliError::from_connect)?;
        Ok(S::new(channel, BearerAuth::new(&self.token)))
    }

    /// Connects and calls `method` (a client method, such as
    /// `WorkRequests::get_work_request`) with `request`; the server's refusal becomes the
    /// command's error.
    async fn call<S: Service, Q, A>(
        &self,
        method: impl AsyncFnOnce(&mut S, Q) -> Result<Response<A>, Status>,
        request: Q,
    ) -> Result<A, CliError> {
        let mut client = self.client().await?;
        Ok(method(&mut client, request).await?.into_inner())
    }
}

/// The shape of most commands: [`Server::call`], then print the answer as its view.
async fn show<S: Service, Q, A: Answer>(
    server: &Server,
    printer: &mut Printer<'_>,
    method: impl AsyncFnOnce(&mut S, Q) -> Result<Response<A>, Status>,
    request: Q,
) -> Result<(), CliError> {
    let answer = server.call(method, request).await?;
    printer.show(&A::View::from(answer))
}

/// A channel whose calls carry the bearer token.
pub type Authenticated = InterceptedService<Channel, BearerAuth>;

type Tokens = TokenServiceClient<Authenticated>;
type Users = UserServiceClient<Authenticated>;
type Workspaces = WorkspaceServiceClient<Authenticated>;
type Workers = WorkerServiceClient<Authenticated>;
type WorkRequests = WorkRequestServiceClient<Authenticated>;
type Artifacts = berth_common::proto::artifact_service_client::ArtifactServiceClient<Authenticated>;
type Collections =
    berth_common::proto::collection_service_client::CollectionServiceClient<Authenticated>;
type Templates = berth_common::proto::template_service_client::TemplateServiceClient<Authenticated>;
type Services = berth_common::proto::service_service_client::ServiceServiceClient<Authenticated>;
type Triggers = berth_common::proto::trigger_service_client::TriggerServiceClient<Authenticated>;
type Notifications =
    berth_common::proto::notification_service_client::NotificationServiceClient<Authenticated>;
type Topics = berth_common::proto::topic_service_client::TopicServiceClient<Authenticated>;

/// A generated client of one of the services the CLI calls.
trait Service {
    /// The client on `channel`, every call of which carries `auth`.
    fn new(channel: Channel, auth: BearerAuth) -> Self;
}

impl Service for Tokens {
    fn new(channel: Channel, auth: BearerAuth) -> Tokens {
        TokenServiceClient::with_interceptor(channel, auth)
    }
}

impl Service for Users {
    fn new(channel: Channel, auth: BearerAuth) -> Users {
        UserServiceClient::with_interceptor(channel, auth)
    }
}

impl Service for Workspaces {
    fn new(channel: Channel, auth: BearerAuth) -> Workspaces {
        WorkspaceServiceClient::with_interceptor(channel, auth)
    }
}

impl Service for Workers {
    fn new(channel: Channel, auth: BearerAuth) -> Workers {
        WorkerServiceClient::with_interceptor(channel, auth)
    }
}

impl Service for Templates {
    fn new(channel: Channel, auth: BearerAuth) -> Templates {
        berth_common::proto::template_service_client::TemplateServiceClient::with_interceptor(
            channel, auth,
        )
    }
}

impl Service for Services {
    fn new(channel: Channel, auth: BearerAuth) -> Services {
        berth_common::proto::service_service_client::ServiceServiceClient::with_interceptor(
            channel, auth,
        )
    }
}

impl Service for Triggers {
    fn new(channel: Channel, auth: BearerAuth) -> Triggers {
        berth_common::proto::trigger_service_client::TriggerServiceClient::with_interceptor(
            channel, auth,
        )
    }
}

impl Service for Notifications {
    fn new(channel: Channel, auth: BearerAuth) -> Notifications {
        berth_common::proto::notification_service_client::NotificationServiceClient::with_interceptor(
            channel, auth,
        )
    }
}

impl Service for Topics {
    fn new(channel: Channel, auth: BearerAuth) -> Topics {
        berth_common::proto::topic_service_client::TopicServiceClient::with_interceptor(
            channel, auth,
        )
    }
}

impl Service for WorkRequests {
    fn new(channel: Channel, auth: BearerAuth) -> WorkRequests {
        WorkRequestServiceClient::with_interceptor(channel, auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::OutputFormat;

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
