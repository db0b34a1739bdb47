//! What can go wrong in a command, and the exit status each kind gets.
//!
//! Every error becomes exactly one line on stderr, `error: <what is wrong>`, so scripts can
//! show it as is. The exit status tells a script whose fault it was: 2 for a command line
//! that cannot work (the same status clap uses for its own usage errors), 1 for everything
//! that went wrong afterwards (connection, server, files). `berth run` without `--detach`
//! is the exception: it exits with its container's status, so Berth's own failures there
//! get 125 and endings without an exit code get the statuses `run --help` lists (see
//! [`crate::follow`]). `berth run --detach` uses the same 125 when nothing was submitted,
//! so a refused submission has one status whichever way it was asked for.

use berth_common::client::{ConnectError, describe_status};

/// An error that ends a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line cannot work as given (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached.
    #[error("{0}")]
    Connect(String),
    /// The server answered with an error. Boxed: a `Status` is large and errors are rare.
    #[error("{}", describe_status(.0))]
    Status(Box<tonic::Status>),
    /// Something local failed: a file could not be read, output could not be encoded.
    #[error("{0}")]
    Local(String),
    /// Writing to stdout or stderr failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A followed work request ended without an exit code of its container to pass on;
    /// `status` is one of Berth's own (see [`crate::follow::run_exit_status`]).
    #[error("{message}")]
    Ended {
        /// The exit status.
        status: u8,
        /// What happened.
        message: String,
    },
    /// Berth itself failed while `run` followed a request: exit status 125, as `docker
    /// run` does, so that it cannot pass for the container's own exit status 1.
    #[error(transparent)]
    WhileRunning(Box<CliError>),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_status(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Ended { status, .. } => *status,
            CliError::WhileRunning(_) => crate::follow::EXIT_BERTH_ERROR,
            _ => 1,
        }
    }

    /// True when stdout was closed by its reader (`berth list | head`): not worth a
    /// message, since whoever closed it no longer listens.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            CliError::Output(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
            CliError::WhileRunning(inner) => inner.is_broken_pipe(),
            _ => false,
        }
    }

    /// This error as `run` reports it while following: usage errors keep status 2 and
    /// statuses already chosen for the request stay; Berth's own failures become 125.
    pub fn while_running(self) -> CliError {
        match self {
            CliError::Usage(_) | CliError::Ended { .. } | CliError::WhileRunning(_) => self,
            other => CliError::WhileRunning(Box::new(other)),
        }
    }

    /// Explains a failed connection to `server`, pointing at how to change the address.
    pub fn from_connect(error: ConnectError) -> CliError {
        match error {
            ConnectError::BadUrl { .. } => {
                CliError::Usage(format!("{error} (check --server or BERTH_SERVER)"))
            }
            ConnectError::CaCert { .. } => CliError::Local(error.to_string()),
            ConnectError::Transport { url, source } => CliError::Connect(format!(
                "cannot connect to {url}: {}; is the server running? \
                 (set its address with --server or BERTH_SERVER)",
                causes(&source)
            )),
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> CliError {
        CliError::Status(Box::new(status))
    }
}

/// The chain of causes of `error` on one line. The outer layers of a transport error
/// ("transport error", "client error (Connect)") say nothing the caller does not know
/// already, so only the innermost two are kept, e.g. `tcp connect error: Connection
/// refused (os error 111)`.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && chain.last() != Some(&text) {
            chain.push(text);
        }
        current = e.source();
    }
    let keep = chain.len().saturating_sub(2);
    chain[keep..].join(": ")
}

/// Puts a message on one line: multi-line server messages would break the one-line
/// `error: ...` contract.
pub fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_others_exit_1() {
        assert_eq!(CliError::Usage("x".into()).exit_status(), 2);
        assert_eq!(CliError::Connect("x".into()).exit_status(), 1);
        assert_eq!(
            CliError::from(tonic::Status::invalid_argument("bad")).exit_status(),
            1
        );
    }

    #[test]
    fn berths_own_failures_while_running_exit_125() {
        let lost = CliError::Connect("lost the log".into()).while_running();
        assert_eq!(lost.exit_status(), 125);
        assert_eq!(lost.to_string(), "lost the log");
        assert_eq!(CliError::Usage("x".into()).while_running().exit_status(), 2);
        let cancelled = CliError::Ended {
            status: 130,
            message: "cancelled".into(),
        };
        assert_eq!(cancelled.while_running().exit_status(), 130);
        let pipe = CliError::Output(std::io::ErrorKind::BrokenPipe.into()).while_running();
        assert!(pipe.is_broken_pipe());
    }

    #[test]
    fn server_errors_show_code_and_message() {
        let error = CliError::from(tonic::Status::invalid_argument(
            "spec.memory_bytes: at least 6 MiB",
        ));
        assert_eq!(
            error.to_string(),
            "INVALID_ARGUMENT: spec.memory_bytes: at least 6 MiB"
        );
    }

    #[test]
    fn messages_are_folded_onto_one_line() {
        assert_eq!(one_line("a\n  b\r\n\nc"), "a b c");
    }

    #[test]
    fn bad_server_urls_are_usage_errors() {
        let error = berth_common::client::endpoint("ftp://x", None).expect_err("should fail");
        let error = CliError::from_connect(error);
        assert_eq!(error.exit_status(), 2);
        assert!(error.to_string().contains("--server"), "{error}");
    }
}
