//! `berth`, the command-line client for a Berth server.
//!
//! ```text
//! berth [--server URL] [--token TOKEN | --token-file PATH] [--ca-cert PATH] [-o table|json] COMMAND
//! ```
//!
//! The flow of every invocation is: parse the command line ([`args`], clap) → check what
//! can be checked locally → connect → one call → print the answer ([`output`]). The code
//! map:
//!
//! - [`args`]: the command-line contract (clap derive). Scripts depend on it; keep it stable.
//! - [`values`]: parsers for sizes, durations and `KEY=VALUE` pairs.
//! - [`workflow`]: workflow files (YAML or JSON) for `berth workflow submit`.
//! - `commands`: the commands, one module per resource. Most build a request, make one
//!   call and print the answer as its view; `run` and `logs` follow a log.
//! - [`follow`]: streaming a work request's log (`run` without `--detach`, `logs`),
//!   resuming broken streams, and `run`'s exit statuses.
//! - [`output`]: views of protocol messages and their table and JSON renderings, one
//!   module per resource.
//! - `error`: the error type and its exit statuses.
//!
//! Errors are always exactly one line on stderr, `error: <what is wrong>`, with exit status
//! 2 for usage errors (clap's own convention) and 1 for anything that failed after the
//! command line was accepted (connection, server, files). `berth run` without `--detach`
//! exits with its container's status instead, and uses 124, 125, 130 and 137 of its own
//! (listed in `berth run --help`, chosen in [`follow::run_exit_status`]); `berth run
//! --detach` exits 125 too when nothing was submitted.

pub mod args;
mod commands;
mod error;
pub mod follow;
pub mod output;
pub mod values;
pub mod workflow;

use std::ffi::OsString;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::args::Cli;
use crate::error::one_line;
use crate::output::Printer;

/// Runs `berth` with `args` (the program name first, as in [`std::env::args_os`]) on the
/// process's stdout and stderr.
pub async fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let status = run_with(args, &mut std::io::stdout(), &mut std::io::stderr()).await;
    ExitCode::from(status)
}

/// Runs `berth` with `args`, writing results to `out` and errors and notes to `err`;
/// returns the exit status (0 success, 1 failure, 2 usage error; `run` without `--detach`
/// passes its container's on). Ctrl-C stops a command that follows a log.
pub async fn run_with<I, T>(
    args: I,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_with_interrupt(args, out, err, ctrl_c()).await
}

/// [`run_with`], with `interrupt` in place of Ctrl-C: when it resolves, a command that
/// follows a log stops as after Ctrl-C.
pub async fn run_with_interrupt<I, T>(
    args: I,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    interrupt: impl Future<Output = ()> + Send,
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(error) => return report_clap_error(&error, out, err),
    };
    let mut printer = Printer {
        format: cli.global.output,
        out,
        err,
    };
    let interrupt = std::pin::pin!(interrupt);
    match commands::execute(cli, &mut printer, interrupt).await {
        Ok(status) => status,
        Err(error) => {
            if !error.is_broken_pipe() {
                // Nothing sensible is left to do if stderr itself is gone.
                let _ = writeln!(printer.err, "error: {}", one_line(&error.to_string()));
            }
            error.exit_status()
        }
    }
}

/// Resolves on Ctrl-C (SIGINT). The handler is installed when this is first polled, that
/// is only by commands that follow a log; if it cannot be installed, this never resolves
/// and Ctrl-C keeps its default effect of ending the process.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Help and version go to stdout with status 0; everything else clap refuses is one
/// `error:` line with status 2.
fn report_clap_error(error: &clap::Error, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    // Failing to print help or an error leaves nothing better to do than to exit.
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // The version comes without a final newline.
            let text = error.render().to_string();
            let _ = writeln!(out, "{}", text.trim_end());
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = write!(err, "{}", error.render());
            2
        }
        _ => {
            let _ = writeln!(err, "error: {}", usage_message(error));
            2
        }
    }
}

/// Turns a clap error into one line. A bad value becomes `--flag: <what the parser said>`;
/// other errors keep clap's first paragraph (its "Usage:" and "try --help" lines are
/// dropped).
fn usage_message(error: &clap::Error) -> String {
    if error.kind() == ErrorKind::ValueValidation
        && let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg)
        && let Some(cause) = std::error::Error::source(error)
    {
        // `arg` reads like `--memory <SIZE>`; the value name adds nothing.
        let flag = arg.split(' ').next().unwrap_or(arg);
        return one_line(&format!("{flag}: {cause}"));
    }
    let rendered = error.render().to_string();
    let first_paragraph = rendered.split("\n\n").next().unwrap_or_default();
    let line = one_line(first_paragraph);
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `berth` with `line` and returns (status, stdout, stderr).
    async fn berth(line: &[&str]) -> (u8, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let args = std::iter::once("berth").chain(line.iter().copied());
        let status = run_with(args, &mut out, &mut err).await;
        (
            status,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }

    #[tokio::test]
    async fn a_bad_size_is_one_line_naming_the_flag() {
        let (status, out, err) = berth(&["run", "busybox", "--memory", "12Q"]).await;
        assert_eq!(status, 2);
        assert_eq!(out, "");
        assert_eq!(
            err,
            "error: --memory: cannot parse \"12Q\" as a size (examples: 256M, 1G)\n"
        );
    }

    #[tokio::test]
    async fn a_bad_key_value_is_one_line_naming_the_flag() {
        let (status, _, err) = berth(&["run", "busybox", "--env", "A"]).await;
        assert_eq!(status, 2);
        assert_eq!(err, "error: --env: expected KEY=VALUE, got \"A\"\n");
    }

    #[tokio::test]
    async fn other_usage_errors_are_one_line_too() {
        for line in [
            &["token", "create"][..],
            &["list", "--status", "done"],
            &["list", "--limit", "0"],
            &["frobnicate"],
            &["get"],
        ] {
            let (status, _, err) = berth(line).await;
            assert_eq!(status, 2, "{line:?}");
            assert!(err.starts_with("error: "), "{line:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{line:?}: {err}");
        }
        let (_, _, err) = berth(&["token", "create"]).await;
        assert!(err.contains("--role"), "{err}");
    }

    #[tokio::test]
    async fn help_goes_to_stdout_and_succeeds() {
        let (status, out, err) = berth(&["run", "--help"]).await;
        assert_eq!(status, 0);
        assert!(out.contains("--secret-env"), "{out}");
        assert!(out.contains("environment"), "{out}");
        assert_eq!(err, "");
    }

    #[tokio::test]
    async fn no_token_is_reported_before_connecting() {
        // Port 9 (discard) on a TEST-NET address: connecting would hang, so a quick
        // answer shows the check happens first.
        if std::env::var_os("BERTH_TOKEN").is_some() {
            return; // The environment supplies one; nothing to check here.
        }
        let (status, _, err) = berth(&["--server", "http://192.0.2.1:9", "get", "x"]).await;
        assert_eq!(status, 2);
        assert_eq!(
            err,
            "error: no token: pass --token, --token-file or set BERTH_TOKEN\n"
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_address_and_the_flag() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let server = format!("http://{address}");
        let (status, out, err) = berth(&["--server", &server, "--token", "t", "list"]).await;
        assert_eq!(status, 1);
        assert_eq!(out, "");
        assert!(
            err.starts_with(&format!("error: cannot connect to {server}: ")),
            "{err}"
        );
        assert!(err.contains("--server"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
