//! Following a work request's log, for `berth run` (without `--detach`) and `berth logs`.
//!
//! The server streams a log as [`proto::LogChunk`]s in the order the output was produced.
//! The container's standard output goes to our stdout; its standard error and Berth's own
//! notes (the system stream: pulls, truncation, timeouts, each line starting with
//! `[berth] `) go to our stderr, as they are. Every chunk is written and flushed as it
//! arrives, so someone reading along sees a line before the job ends.
//!
//! # Resuming
//!
//! A stream can break: the server restarts, a proxy drops the connection. We then call
//! again after growing pauses and carry on where we were, giving up only after a minute
//! without progress ([`Reconnect`]). "Where we were" is kept per (attempt, stream) in
//! [`Written`], because every attempt's streams start again at offset 0.
//!
//! The request's `stdout_offset` and `stderr_offset` apply to every attempt the stream
//! carries, so they can only be used when following one given attempt. Following all
//! attempts (attempt 0), a resumed stream starts from the beginning again and [`Written`]
//! drops what was written already: correct whatever attempts came and went meanwhile, at
//! the price of reading the log again, which the server caps in size.
//!
//! # When following ends
//!
//! With `follow`, the server ends the stream once the request is completed or aborted. A
//! stream can also end cleanly for other reasons (a server shutting down), so the end
//! counts only once GetWorkRequest confirms the request is over; otherwise we resume.
//!
//! # Exit statuses of `berth run`
//!
//! [`run_exit_status`] passes the container's exit code on, and uses codes of its own,
//! borrowed from `docker run` and `timeout(1)`, when there is no exit code to pass on.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use berth_common::client::describe_status;
use berth_common::proto;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use tokio::time::Instant;
use tonic::Code;

use crate::commands::Authenticated;
use crate::error::CliError;

/// `LogChunk.stream` of the container's standard output.
pub const STDOUT: u32 = 1;
/// `LogChunk.stream` of the container's standard error.
pub const STDERR: u32 = 2;
/// `LogChunk.stream` of Berth's own notes.
pub const SYSTEM: u32 = 3;

/// Exit status of `berth run` when the request completed with result `error`: Berth could
/// not run the container (the image could not be pulled, the worker was lost, ...). The
/// same status covers Berth's own failures while following, as `docker run` does.
pub const EXIT_BERTH_ERROR: u8 = 125;
/// Exit status when the request failed by timing out (the status `timeout(1)` uses). The
/// container's exit code is not passed on then: it is that of Berth stopping it (143 after
/// SIGTERM, 137 after SIGKILL), which the program could have returned by itself too.
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit status when the container was killed for lack of memory and no exit code was
/// recorded (128 + SIGKILL, what a shell reports for a killed process).
pub const EXIT_OOM: u8 = 137;
/// Exit status when the request was cancelled, or following was stopped with Ctrl-C
/// (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// How far each (attempt, stream) of a log has been written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    ends: BTreeMap<(u32, u32), u64>,
}

impl Written {
    /// Bytes of `stream` of `attempt` written so far.
    pub fn end(&self, attempt: u32, stream: u32) -> u64 {
        self.ends.get(&(attempt, stream)).copied().unwrap_or(0)
    }

    /// Returns the part of `chunk` not written yet and counts it as written.
    pub fn take<'c>(&mut self, chunk: &'c proto::LogChunk) -> &'c [u8] {
        let written = self.end(chunk.attempt, chunk.stream);
        let fresh = unwritten_part(written, chunk.offset, &chunk.data);
        let chunk_end = chunk.offset.saturating_add(chunk.data.len() as u64);
        if chunk_end > written {
            self.ends.insert((chunk.attempt, chunk.stream), chunk_end);
        }
        fresh
    }
}

/// The part of `data`, which starts at byte `offset` of its stream, that lies past the
/// first `written` bytes of that stream. A chunk starting beyond `written` is kept whole:
/// the bytes in between are not coming back, and hiding what did come would not help.
pub fn unwritten_part(written: u64, offset: u64, data: &[u8]) -> &[u8] {
    let seen = usize::try_from(written.saturating_sub(offset)).unwrap_or(usize::MAX);
    &data[seen.min(data.len())..]
}

/// Which log to stream.
#[derive(Clone, Debug)]
pub struct LogTarget {
    /// The work request's id.
    pub id: String,
    /// One attempt (1, 2, ...), or 0 for all of them, oldest first.
    pub attempt: u32,
    /// Keep streaming until the request is over.
    pub follow: bool,
}

impl LogTarget {
    /// The StreamLogs request that carries on after what `written` holds (see the module
    /// docs for why the offsets are only sent for a single attempt).
    pub fn resume_request(&self, written: &Written) -> proto::StreamLogsRequest {
        let (stdout_offset, stderr_offset) = if self.attempt == 0 {
            (0, 0)
        } else {
            (
                written.end(self.attempt, STDOUT),
                written.end(self.attempt, STDERR),
            )
        };
        proto::StreamLogsRequest {
            id: self.id.clone(),
            attempt: self.attempt,
            follow: self.follow,
            stdout_offset,
            stderr_offset,
        }
    }

    /// The command that picks the log up again, for messages.
    fn again(&self) -> String {
        let follow = if self.follow { " -f" } else { "" };
        let attempt = if self.attempt == 0 {
            String::new()
        } else {
            format!(" --attempt {}", self.attempt)
        };
        format!("berth logs{follow}{attempt} {}", self.id)
    }
}

/// When to call again after a broken stream, and when to give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reconnect {
    /// The pause after the first failure; each further failure doubles it.
    pub first_delay: Duration,
    /// The longest pause.
    pub max_delay: Duration,
    /// Give up once calls have failed, without any new output, for this long.
    pub give_up_after: Duration,
}

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl Reconnect {
    /// The pause before the next call when calls have been failing for `failing_for` and
    /// the last pause was `previous` (None after the first failure); None to give up. The
    /// last call is made right at the deadline rather than a pause before it.
    pub fn next_delay(
        &self,
        failing_for: Duration,
        previous: Option<Duration>,
    ) -> Option<Duration> {
        let left = self.give_up_after.checked_sub(failing_for)?;
        if left.is_zero() {
            return None;
        }
        let delay = previous.map_or(self.first_delay, |d| d.saturating_mul(2));
        Some(delay.min(self.max_delay).min(left))
    }
}

/// Errors worth calling again for: the server or the path to it is (for now) away.
/// Everything else (not found, permission denied, ...) will not change by waiting.
fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

fn is_terminal(request: &proto::WorkRequest) -> bool {
    matches!(
        proto::WorkRequestStatus::try_from(request.status),
        Ok(proto::WorkRequestStatus::Completed | proto::WorkRequestStatus::Aborted)
    )
}

/// How one call of StreamLogs went.
struct Pass {
    /// Whether it brought output not written before.
    progressed: bool,
    /// Why it stopped early, if it did.
    broken: Option<tonic::Status>,
}

/// Writes the log of `target`: stdout chunks to `out`, the others to `err`. Resumes broken
/// streams as [`Reconnect`] allows. With `follow`, returns the request once it is over;
/// without, returns None after what is stored so far.
pub(crate) async fn write_log(
    client: &mut WorkRequestServiceClient<Authenticated>,
    target: &LogTarget,
    reconnect: Reconnect,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<Option<proto::WorkRequest>, CliError> {
    let mut written = Written::default();
    let mut failing_since: Option<Instant> = None;
    let mut delay: Option<Duration> = None;
    loop {
        let pass = stream_once(client, target, &mut written, out, err).await?;
        if pass.progressed {
            failing_since = None;
            delay = None;
        }
        let problem = match pass.broken {
            Some(status) if is_transient(&status) => describe_status(&status),
            Some(status) => return Err(status.into()),
            None if !target.follow => return Ok(None),
            None => {
                let got = client
                    .get_work_request(proto::GetWorkRequestRequest {
                        id: target.id.clone(),
                    })
                    .await;
                match got {
                    Ok(request) if is_terminal(request.get_ref()) => {
                        return Ok(Some(request.into_inner()));
                    }
                    Ok(_) => "the log stream ended before the work request did".to_owned(),
                    Err(status) if is_transient(&status) => describe_status(&status),
                    Err(status) => return Err(status.into()),
                }
            }
        };
        let since = *failing_since.get_or_insert_with(Instant::now);
        let Some(pause) = reconnect.next_delay(since.elapsed(), delay) else {
            return Err(CliError::Connect(format!(
                "lost the log of work request {} and could not get it back for {} \
                 (last: {problem}); the work request goes on: {}",
                target.id,
                humantime::format_duration(reconnect.give_up_after),
                target.again()
            )));
        };
        delay = Some(pause);
        tokio::time::sleep(pause).await;
    }
}

/// One call of StreamLogs, writing what it brings that was not written before.
async fn stream_once(
    client: &mut WorkRequestServiceClient<Authenticated>,
    target: &LogTarget,
    written: &mut Written,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> Result<Pass, CliError> {
    let mut pass = Pass {
        progressed: false,
        broken: None,
    };
    let mut stream = match client.stream_logs(target.resume_request(written)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            pass.broken = Some(status);
            return Ok(pass);
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                let fresh = written.take(&chunk);
                if fresh.is_empty() {
                    continue;
                }
                pass.progressed = true;
                // Unknown streams are not the container's output: keep stdout clean.
                let sink: &mut (dyn Write + Send) = if chunk.stream == STDOUT {
                    &mut *out
                } else {
                    &mut *err
                };
                sink.write_all(fresh)?;
                sink.flush()?;
            }
            Ok(None) => return Ok(pass),
            Err(status) => {
                pass.broken = Some(status);
                return Ok(pass);
            }
        }
    }
}

/// How `berth run` ends for a request that is over.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Exit with the container's own exit status; nothing to add.
    Exit(u8),
    /// Exit with a status of Berth's and say why in one `error:` line.
    Failed {
        /// The exit status.
        status: u8,
        /// The `error:` line, without the prefix.
        message: String,
    },
}

/// The container's exit code as a process exit status. Codes outside 0..=255 (Docker
/// reports them on some platforms) cannot be passed on; they become 255.
pub fn container_exit_status(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(u8::MAX)
}

/// `: <message>` when the request has one.
fn message(request: &proto::WorkRequest) -> String {
    if request.message.is_empty() {
        String::new()
    } else {
        format!(": {}", request.message)
    }
}

/// How `berth run` ends for `request`, which is over (completed or aborted):
///
/// - `failure` with reason `timeout`: [`EXIT_TIMEOUT`], exit code or not;
/// - completed with `success` or `failure` and an exit code: that code (see
///   [`container_exit_status`]); `success` without one: 0;
/// - `failure` without an exit code: [`EXIT_OOM`] for reason `oom`, else
///   [`EXIT_BERTH_ERROR`];
/// - `error` (Berth could not run it) or no known result: [`EXIT_BERTH_ERROR`];
/// - aborted (cancelled): [`EXIT_INTERRUPTED`].
///
/// Whenever the status is not the container's own, the message says why.
pub fn run_exit_status(request: &proto::WorkRequest) -> RunEnd {
    use proto::WorkRequestStatus as S;
    use proto::WorkResult as R;
    let id = &request.id;
    let why = || {
        let reason = if request.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", request.reason)
        };
        reason + &message(request)
    };
    let failed = |status: u8, message: String| RunEnd::Failed { status, message };
    match S::try_from(request.status) {
        Ok(S::Aborted) => {
            return failed(EXIT_INTERRUPTED, format!("work request {id} was cancelled"));
        }
        Ok(S::Completed) => {}
        _ => {
            return failed(
                EXIT_BERTH_ERROR,
                format!(
                    "work request {id} has not ended (status {})",
                    crate::output::status_name(request.status)
                ),
            );
        }
    }
    match (R::try_from(request.result), request.exit_code) {
        (Ok(R::Failure), _) if request.reason == "timeout" => {
            let code = request
                .exit_code
                .map(|code| format!("; its container exited with {code}"))
                .unwrap_or_default();
            failed(
                EXIT_TIMEOUT,
                format!("work request {id} timed out{code}{}", message(request)),
            )
        }
        (Ok(R::Success | R::Failure), Some(code)) => RunEnd::Exit(container_exit_status(code)),
        (Ok(R::Success), None) => RunEnd::Exit(0),
        (Ok(R::Failure), None) => {
            let status = match request.reason.as_str() {
                "oom" => EXIT_OOM,
                _ => EXIT_BERTH_ERROR,
            };
            failed(status, format!("work request {id} failed{}", why()))
        }
        (Ok(R::Error), _) => failed(
            EXIT_BERTH_ERROR,
            format!("work request {id} could not run{}", why()),
        ),
        (Ok(R::Unspecified) | Err(_), _) => failed(
            EXIT_BERTH_ERROR,
            format!(
                "work request {id} completed without a known result{}",
                why()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(attempt: u32, stream: u32, offset: u64, data: &str) -> proto::LogChunk {
        proto::LogChunk {
            attempt,
            stream,
            offset,
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn unwritten_part_drops_what_was_written() {
        assert_eq!(unwritten_part(0, 0, b"hello"), b"hello");
        assert_eq!(unwritten_part(3, 0, b"hello"), b"lo");
        assert_eq!(unwritten_part(5, 0, b"hello"), b"");
        assert_eq!(unwritten_part(9, 0, b"hello"), b"");
        assert_eq!(unwritten_part(7, 5, b"world"), b"rld");
        // A gap: what came is shown whole.
        assert_eq!(unwritten_part(2, 5, b"world"), b"world");
        assert_eq!(unwritten_part(u64::MAX, 0, b"x"), b"");
    }

    #[test]
    fn a_replayed_log_is_written_once_per_attempt_and_stream() {
        let mut written = Written::default();
        let first_pass = [
            chunk(1, STDOUT, 0, "a1-out "),
            chunk(1, STDERR, 0, "a1-err "),
            chunk(1, STDOUT, 7, "more"),
        ];
        let printed: Vec<&[u8]> = first_pass.iter().map(|c| written.take(c)).collect();
        assert_eq!(printed, [&b"a1-out "[..], b"a1-err ", b"more"]);
        assert_eq!(written.end(1, STDOUT), 11);
        assert_eq!(written.end(1, STDERR), 7);

        // The resumed stream starts again from the beginning, with a second attempt whose
        // offsets start at 0 again and must not be taken for attempt 1's.
        let second_pass = [
            chunk(1, STDOUT, 0, "a1-out "),
            chunk(1, STDERR, 0, "a1-err "),
            chunk(1, STDOUT, 7, "more and then some"),
            chunk(1, SYSTEM, 0, "[berth] retrying\n"),
            chunk(2, STDOUT, 0, "a2-out"),
        ];
        let printed: Vec<&[u8]> = second_pass.iter().map(|c| written.take(c)).collect();
        assert_eq!(
            printed,
            [
                &b""[..],
                b"",
                b" and then some",
                b"[berth] retrying\n",
                b"a2-out"
            ]
        );
        assert_eq!(written.end(2, STDOUT), 6);
    }

    #[test]
    fn offsets_are_sent_only_for_a_single_attempt() {
        let mut written = Written::default();
        written.take(&chunk(2, STDOUT, 0, "12345"));
        written.take(&chunk(2, STDERR, 0, "12"));
        let one = LogTarget {
            id: "r".into(),
            attempt: 2,
            follow: true,
        };
        let request = one.resume_request(&written);
        assert_eq!((request.stdout_offset, request.stderr_offset), (5, 2));
        assert_eq!((request.attempt, request.follow), (2, true));
        let all = LogTarget { attempt: 0, ..one };
        let request = all.resume_request(&written);
        assert_eq!((request.stdout_offset, request.stderr_offset), (0, 0));
        assert_eq!(request.attempt, 0);
    }

    #[test]
    fn reconnect_pauses_grow_and_give_up_after_the_budget() {
        let policy = Reconnect::default();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(policy.next_delay(s(0), None), Some(ms(250)));
        assert_eq!(policy.next_delay(s(1), Some(ms(250))), Some(ms(500)));
        assert_eq!(policy.next_delay(s(10), Some(s(4))), Some(s(5)));
        assert_eq!(policy.next_delay(s(58), Some(s(5))), Some(s(2)));
        assert_eq!(policy.next_delay(s(60), Some(s(2))), None);
        assert_eq!(policy.next_delay(s(61), Some(s(5))), None);
    }

    #[test]
    fn only_transport_trouble_is_retried() {
        assert!(is_transient(&tonic::Status::unavailable("restarting")));
        assert!(is_transient(&tonic::Status::unknown("h2 protocol error")));
        assert!(!is_transient(&tonic::Status::not_found("no such request")));
        assert!(!is_transient(&tonic::Status::permission_denied(
            "not yours"
        )));
    }

    fn ended(
        status: proto::WorkRequestStatus,
        result: proto::WorkResult,
        exit_code: Option<i32>,
        reason: &str,
        message: &str,
    ) -> proto::WorkRequest {
        proto::WorkRequest {
            id: "wr-9".into(),
            status: status as i32,
            result: result as i32,
            exit_code,
            reason: reason.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn run_passes_the_container_exit_code_on() {
        use proto::WorkRequestStatus::Completed;
        use proto::WorkResult::{Failure, Success};
        let exit =
            |result, code, reason| run_exit_status(&ended(Completed, result, code, reason, ""));
        assert_eq!(exit(Success, Some(0), ""), RunEnd::Exit(0));
        assert_eq!(exit(Success, None, ""), RunEnd::Exit(0));
        assert_eq!(exit(Failure, Some(3), ""), RunEnd::Exit(3));
        assert_eq!(exit(Failure, Some(255), ""), RunEnd::Exit(255));
        assert_eq!(exit(Failure, Some(137), "oom"), RunEnd::Exit(137));
        assert_eq!(exit(Failure, Some(-1), ""), RunEnd::Exit(255));
        assert_eq!(exit(Failure, Some(256), ""), RunEnd::Exit(255));
    }

    #[test]
    fn run_uses_its_own_codes_when_there_is_no_exit_code() {
        use proto::WorkRequestStatus::{Aborted, Completed};
        use proto::WorkResult::{Error, Failure, Unspecified};
        let end = |status, result, reason, message| {
            run_exit_status(&ended(status, result, None, reason, message))
        };
        assert_eq!(
            end(Completed, Error, "image-pull", "pull access denied"),
            RunEnd::Failed {
                status: 125,
                message: "work request wr-9 could not run (image-pull): pull access denied".into()
            }
        );
        assert_eq!(
            end(Aborted, Unspecified, "cancelled", ""),
            RunEnd::Failed {
                status: 130,
                message: "work request wr-9 was cancelled".into()
            }
        );
        let status = |end: RunEnd| match end {
            RunEnd::Exit(code) => panic!("expected a failure, got exit {code}"),
            RunEnd::Failed { status, .. } => status,
        };
        assert_eq!(status(end(Completed, Failure, "timeout", "")), 124);
        // The exit code of a container Berth stopped for its timeout is Berth's doing.
        assert_eq!(
            run_exit_status(&ended(Completed, Failure, Some(143), "timeout", "")),
            RunEnd::Failed {
                status: 124,
                message: "work request wr-9 timed out; its container exited with 143".into()
            }
        );
        assert_eq!(status(end(Completed, Failure, "oom", "")), 137);
        assert_eq!(status(end(Completed, Failure, "", "")), 125);
        assert_eq!(status(end(Completed, Unspecified, "", "")), 125);
        // A request cancelled while it ran keeps its exit code, but it was cancelled.
        assert_eq!(
            run_exit_status(&ended(Aborted, Unspecified, Some(143), "cancelled", "")),
            RunEnd::Failed {
                status: 130,
                message: "work request wr-9 was cancelled".into()
            }
        );
    }
}
