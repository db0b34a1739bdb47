//! The typed states of work, stored as text.
//!
//! Every state column (`work_requests.status`, `result`, `reason`, `kind`,
//! `unblock_strategy`; `attempts.state`, `outcome`, `reason`) reads back as one of these
//! enums and is written from one, so no code compares state strings by hand and a typo is
//! a compile error. The stored text is each variant's [`as_str`](Status::as_str); an
//! unknown text in the database is a read error, not a silent default.
//!
//! [`verdict`] is the one place that decides what a finished attempt means for its
//! request.

use std::fmt;
use std::io::Write;

use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;

/// Declares a state enum stored as text, with its text forms.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub(crate) enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// Reads the stored text.
            pub(crate) fn parse(text: &str) -> Option<$name> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(serialize::IsNull::No)
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(bytes.as_bytes())?;
                $name::parse(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?} in the database"), text)
                        .into()
                })
            }
        }
    };
}

text_enum! {
    /// A work request's place in its lifecycle (see DESIGN.md).
    pub(crate) enum Status {
        /// Waiting on dependencies or on manual approval.
        Blocked = "blocked",
        /// In the queue.
        Pending = "pending",
        /// Assigned to a worker (or, for a workflow, some step has started).
        Running = "running",
        /// Ended with a result.
        Completed = "completed",
        /// Ended without one: cancelled, rejected, or a dependency failed.
        Aborted = "aborted",
    }
}

impl Status {
    /// Completed and aborted requests never change again.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Aborted)
    }
}

text_enum! {
    /// The result of a completed request.
    pub(crate) enum WorkResult {
        /// The job did what it was asked (exit code 0).
        Success = "success",
        /// The job ran and failed (non-zero exit, timeout, out of memory).
        Failure = "failure",
        /// The job could not run (image, start, or its worker was lost for good).
        Error = "error",
    }
}

text_enum! {
    /// Where an attempt is.
    pub(crate) enum AttemptState {
        /// Sent to the worker, not yet accepted.
        Assigned = "assigned",
        /// The worker took it.
        Accepted = "accepted",
        /// Its container runs.
        Running = "running",
        /// Over, one way or another.
        Finished = "finished",
    }
}

text_enum! {
    /// Why a request or an attempt ended (or went back to the queue) the way it did.
    pub(crate) enum Reason {
        /// Nothing to say: it ran and exited by itself.
        None = "",
        /// Cancelled by a user.
        Cancelled = "cancelled",
        /// Ran past its timeout.
        Timeout = "timeout",
        /// Killed for exceeding its memory limit.
        Oom = "oom",
        /// The image could not be had.
        ImagePull = "image-pull",
        /// Docker refused to create or start the container.
        StartFailed = "start-failed",
        /// The worker shut down before the attempt ended.
        Interrupted = "interrupted",
        /// The worker fell silent for the lease TTL, or no longer runs the attempt.
        WorkerLost = "worker-lost",
        /// A dependency ended without success.
        DependencyFailed = "dependency-failed",
        /// Rejected: by a user deciding a manual unblock, or by the worker it was offered to.
        Rejected = "rejected",
        /// The worker did not accept the assignment within the hand-off deadline.
        NotAccepted = "not-accepted",
        /// The assignment could not be handed to the worker's stream.
        HandoffFailed = "handoff-failed",
        /// The job exited 0 but its declared outputs could not be collected (a hard link,
        /// a FIFO, nothing matched, the upload failed); the attempt's message says why.
        Outputs = "outputs",
    }
}

text_enum! {
    /// How an attempt ended, as its worker saw it (stored as the protocol names it).
    pub(crate) enum Outcome {
        /// The worker said nothing usable.
        Unspecified = "OUTCOME_UNSPECIFIED",
        /// The container exited by itself.
        Exited = "OUTCOME_EXITED",
        /// It ran past its timeout and was stopped.
        TimedOut = "OUTCOME_TIMED_OUT",
        /// It was cancelled and stopped.
        Cancelled = "OUTCOME_CANCELLED",
        /// The kernel killed it for its memory use.
        OomKilled = "OUTCOME_OOM_KILLED",
        /// The image could not be had.
        ImagePullFailed = "OUTCOME_IMAGE_PULL_FAILED",
        /// Docker refused to create or start it.
        StartFailed = "OUTCOME_START_FAILED",
        /// The worker shut down before it ended.
        Interrupted = "OUTCOME_INTERRUPTED",
    }
}

text_enum! {
    /// What a request is.
    pub(crate) enum Kind {
        /// A container to run.
        Job = "job",
        /// A workflow parent: runs nothing, its status follows its steps.
        Workflow = "workflow",
    }
}

text_enum! {
    /// How a blocked request leaves `blocked`.
    pub(crate) enum UnblockStrategy {
        /// When its dependencies are satisfied.
        Deps = "deps",
        /// Only when a user accepts it, after its dependencies are satisfied.
        Manual = "manual",
    }
}

impl Default for UnblockStrategy {
    /// A request waits for its dependencies only, unless it asks for approval.
    fn default() -> Self {
        UnblockStrategy::Deps
    }
}

/// What a finished attempt means for its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The request ends: completed with a result, or aborted.
    Ends(Ending),
    /// The request goes back to the queue (its worker shut down under it).
    Requeue(Reason),
}

impl Verdict {
    /// The reason recorded on the attempt.
    pub(crate) fn reason(self) -> Reason {
        match self {
            Verdict::Ends(ending) => ending.reason,
            Verdict::Requeue(reason) => reason,
        }
    }
}

/// How a request ends: the terminal status, its result (for completed requests only) and
/// why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ending {
    /// Completed or aborted.
    pub status: Status,
    /// Set exactly when `status` is completed.
    pub result: Option<WorkResult>,
    /// Why.
    pub reason: Reason,
}

impl Ending {
    /// Completed with `result`.
    pub(crate) fn completed(result: WorkResult, reason: Reason) -> Ending {
        Ending {
            status: Status::Completed,
            result: Some(result),
            reason,
        }
    }

    /// Aborted.
    pub(crate) fn aborted(reason: Reason) -> Ending {
        Ending {
            status: Status::Aborted,
            result: None,
            reason,
        }
    }
}

/// How a request ends, with what is recorded alongside. What is `None` is left as it is
/// (a cancel keeps the message and exit code an earlier attempt left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Closing {
    /// Status, result and reason.
    pub ending: Ending,
    /// Said to the user (`WorkRequest.message`).
    pub message: Option<String>,
    /// The container's exit code (`Some(None)` clears it: the attempt that ended the
    /// request ran no container).
    pub exit_code: Option<Option<i32>>,
    /// When the request started, recorded unless an earlier start was (a Started folded
    /// into its Finished).
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Closing {
    /// An ending with a message, leaving the exit code as it is.
    pub fn new(ending: Ending, message: impl Into<String>) -> Closing {
        Closing {
            ending,
            message: Some(message.into()),
            exit_code: None,
            started_at: None,
        }
    }

    /// An ending that leaves the message and exit code as they are.
    pub fn bare(ending: Ending) -> Closing {
        Closing {
            ending,
            message: None,
            exit_code: None,
            started_at: None,
        }
    }
}

/// What a finished attempt means for its request. The worker decides nothing about
/// results: it reports an outcome, the exit code and whether collecting the outputs
/// failed, and this maps them. A job that exited 0 without the outputs it declared did
/// not deliver: that is an error, not a success its dependants could build on.
pub(crate) fn verdict(outcome: Outcome, exit_code: Option<i32>, outputs_failed: bool) -> Verdict {
    use WorkResult::{Error, Failure, Success};
    Verdict::Ends(match outcome {
        Outcome::Exited if exit_code == Some(0) && outputs_failed => {
            Ending::completed(Error, Reason::Outputs)
        }
        Outcome::Exited if exit_code == Some(0) => Ending::completed(Success, Reason::None),
        Outcome::Exited => Ending::completed(Failure, Reason::None),
        Outcome::TimedOut => Ending::completed(Failure, Reason::Timeout),
        Outcome::OomKilled => Ending::completed(Failure, Reason::Oom),
        Outcome::ImagePullFailed => Ending::completed(Error, Reason::ImagePull),
        Outcome::StartFailed | Outcome::Unspecified => {
            Ending::completed(Error, Reason::StartFailed)
        }
        Outcome::Cancelled => Ending::aborted(Reason::Cancelled),
        Outcome::Interrupted => return Verdict::Requeue(Reason::Interrupted),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_texts_round_trip_and_are_distinct() {
        fn check<T: Copy + PartialEq + fmt::Debug>(
            all: &[T],
            text: fn(T) -> &'static str,
            parse: fn(&str) -> Option<T>,
        ) {
            let mut seen = std::collections::HashSet::new();
            for &value in all {
                assert!(seen.insert(text(value)), "{value:?} repeats a text");
                assert_eq!(parse(text(value)), Some(value));
            }
            assert_eq!(parse("no-such-state"), None);
        }
        check(Status::ALL, Status::as_str, Status::parse);
        check(WorkResult::ALL, WorkResult::as_str, WorkResult::parse);
        check(AttemptState::ALL, AttemptState::as_str, AttemptState::parse);
        check(Reason::ALL, Reason::as_str, Reason::parse);
        check(Outcome::ALL, Outcome::as_str, Outcome::parse);
        check(Kind::ALL, Kind::as_str, Kind::parse);
        check(
            UnblockStrategy::ALL,
            UnblockStrategy::as_str,
            UnblockStrategy::parse,
        );
    }

    #[test]
    fn a_finished_attempt_maps_to_its_result() {
        let ends = |outcome, code| match verdict(outcome, code, false) {
            Verdict::Ends(ending) => ending,
            other => panic!("{outcome:?} should end the request, got {other:?}"),
        };
        assert_eq!(
            ends(Outcome::Exited, Some(0)).result,
            Some(WorkResult::Success)
        );
        assert_eq!(
            ends(Outcome::Exited, Some(2)).result,
            Some(WorkResult::Failure)
        );
        assert_eq!(ends(Outcome::TimedOut, Some(143)).reason, Reason::Timeout);
        assert_eq!(ends(Outcome::OomKilled, Some(137)).reason, Reason::Oom);
        assert_eq!(
            ends(Outcome::ImagePullFailed, None).result,
            Some(WorkResult::Error)
        );
        assert_eq!(ends(Outcome::Cancelled, None).status, Status::Aborted);
        assert_eq!(ends(Outcome::Cancelled, None).result, None);
        assert_eq!(
            verdict(Outcome::Interrupted, None, false),
            Verdict::Requeue(Reason::Interrupted)
        );
        // Outputs that could not be collected spoil only a success.
        match verdict(Outcome::Exited, Some(0), true) {
            Verdict::Ends(ending) => {
                assert_eq!(ending.result, Some(WorkResult::Error));
                assert_eq!(ending.reason, Reason::Outputs);
            }
            other => panic!("should end the request, got {other:?}"),
        }
        match verdict(Outcome::Exited, Some(4), true) {
            Verdict::Ends(ending) => assert_eq!(ending.result, Some(WorkResult::Failure)),
            other => panic!("should end the request, got {other:?}"),
        }
    }
}
