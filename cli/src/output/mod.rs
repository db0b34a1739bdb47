//! How results are shown: `-o table` for people, `-o json` for programs.
//!
//! Protocol messages are first turned into *views*: plain structs whose field names are the
//! JSON contract (`id`, `status`, `result`, ...), with enums as lowercase strings
//! (`pending`, `if-not-present`), timestamps as RFC 3339 strings and durations as strings
//! like `"30s"`. Both formats render the same view, so the table can never show something
//! the JSON hides or the other way round, and the `key: value` lines of a single object use
//! the JSON field names. Nothing here can print a secret environment value: the views have
//! no field for one.
//!
//! One module per resource holds its views: `tokens`, `users`, `workspaces`, `workers`,
//! `work_requests` (a request with its attempts and workflow steps, and `list`), `queue`,
//! `artifacts` (artifacts and collections), `services` (services with their replicas, history, endpoints), `templates` (templates and releases), `triggers` (trigger rules, events and schedule previews), `topics` (topics, subscriptions, published messages and the lines `topic subscribe` prints) and
//! `workflow_templates` (a workflow template's releases with their steps). This module has what they share: [`Render`], `Answer` (which view each kind of
//! answer is printed as), the `Printer` that writes a view in the chosen format, the formats of times and spans, and the table and `key: value`
//! layouts.

mod artifacts;
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
mod workflow_templates;
mod workspaces;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

pub use self::artifacts::{
    ArtifactListView, ArtifactView, CollectionItemView, CollectionListView, CollectionView,
    DeletedArtifactView, DownloadedView, RelatedView,
};
pub use self::notifications::{
    ChannelListView, ChannelView, CreatedChannelView, DeletedView, DeliveryListView, DeliveryView,
    ReactionListView, ReactionView,
};
pub use self::queue::{QueueEntryView, QueueView};
pub use self::services::{
    DeletedServiceView, EndpointListView, ServiceHistoryView, ServiceListView, ServiceView,
};
pub use self::templates::{
    ChangeView, DeletedTemplateView, JobSpecView, ReleaseListView, ReleaseView, TemplateListView,
    TemplateStatsView, TemplateView,
};
pub use self::tokens::{CreatedTokenView, DeletedTokenView, TokenListView, TokenView};
pub use self::topics::{
    MessageLine, PingView, PublishedListView, SubscriptionListView, SubscriptionView,
    TopicDeletedView, TopicListView, TopicView,
};
pub use self::triggers::{
    PreviewView, TriggerEventListView, TriggerEventView, TriggerRuleListView, TriggerRuleView,
};
pub use self::users::{DeletedUserView, MembershipView, UserListView, UserView};
pub(crate) use self::work_requests::status_name;
pub use self::work_requests::{AttemptView, SubmittedView, WorkRequestListView, WorkRequestView};
pub use self::workers::{WorkerListView, WorkerView};
pub use self::workflow_templates::{
    WorkflowReleaseListView, WorkflowReleaseView, WorkflowTemplateView,
};
pub use self::workspaces::{
    MemberListView, MemberView, RemovedMemberView, WorkspaceListView, WorkspaceView,
};
use crate::args::OutputFormat;
use crate::error::CliError;

/// Something that can be printed in either format.
pub trait Render: Serialize {
    /// The text for `-o table`, ending with a newline.
    fn table(&self) -> String;
}

/// An answer from the server, and the view it is printed as. Each kind of answer has one
/// view, so every command that answers with a work request, say, prints the same fields.
pub(crate) trait Answer: Sized {
    /// The view the answer is printed as.
    type View: Render + From<Self>;
}

/// Where output goes and in which format.
pub(crate) struct Printer<'a> {
    /// `-o table` or `-o json`.
    pub(crate) format: OutputFormat,
    /// Results.
    pub(crate) out: &'a mut (dyn Write + Send),
    /// Notes and warnings for people (never needed by scripts).
    pub(crate) err: &'a mut (dyn Write + Send),
}

impl Printer<'_> {
    /// Prints a result in the chosen format.
    pub(crate) fn show(&mut self, view: &impl Render) -> Result<(), CliError> {
        let text = render(view, self.format)
            .map_err(|e| CliError::Local(format!("cannot encode the output as JSON: {e}")))?;
        self.out.write_all(text.as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    /// Tells the person at the terminal something on stderr.
    pub(crate) fn note(&mut self, text: &str) -> Result<(), CliError> {
        self.err.write_all(text.as_bytes())?;
        self.err.flush()?;
        Ok(())
    }
}

/// Renders `view` in `format`, ready to write to stdout.
fn render(view: &impl Render, format: OutputFormat) -> Result<String, serde_json::Error> {
    match format {
        OutputFormat::Table => Ok(view.table()),
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(view)?;
            text.push('\n');
            Ok(text)
        }
    }
}

/// A point in time: RFC 3339 in UTC, with sub-second digits in JSON only when present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(DateTime<Utc>);

impl Time {
    fn from_proto(timestamp: Option<&prost_types::Timestamp>) -> Option<Time> {
        let timestamp = timestamp?;
        let nanos = u32::try_from(timestamp.nanos).ok()?;
        DateTime::from_timestamp(timestamp.seconds, nanos).map(Time)
    }

    /// To the second, for tables.
    fn short(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

/// A span of time, written like `30s`, `5m` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(Duration);

impl Span {
    fn from_proto(duration: Option<&prost_types::Duration>) -> Option<Span> {
        Duration::try_from(*duration?).ok().map(Span)
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A workspace role by name; `none` for no role.
fn workspace_role_name(value: i32) -> String {
    let name = berth_common::proto::WorkspaceRole::try_from(value)
        .ok()
        .map(|role| match role {
            berth_common::proto::WorkspaceRole::Unspecified => "none",
            berth_common::proto::WorkspaceRole::Viewer => "viewer",
            berth_common::proto::WorkspaceRole::Contributor => "contributor",
            berth_common::proto::WorkspaceRole::Owner => "owner",
        });
    enum_name(value, name)
}

/// An enum value the protocol may grow: unknown numbers are shown, not hidden.
fn enum_name(value: i32, name: Option<&str>) -> String {
    name.map_or_else(|| format!("unknown({value})"), str::to_owned)
}

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// Shown in tables where a value is absent, so columns stay countable with `awk`.
const NONE: &str = "-";

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

fn time(value: Option<Time>) -> String {
    value.map_or_else(|| NONE.to_owned(), Time::short)
}

fn opt(value: Option<impl ToString>) -> String {
    value.map_or_else(|| NONE.to_owned(), |v| v.to_string())
}

fn pairs(map: &BTreeMap<String, String>) -> String {
    let joined: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    joined.join(",")
}

/// A byte count in the largest binary unit that divides it exactly, e.g. `256MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// `key: value` lines with the values aligned. A line break in a value (Docker's
/// message, say) would start what looks like another key, so it becomes a space.
fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (key, value) in rows {
        let value = if value.is_empty() {
            NONE.to_owned()
        } else {
            value.replace(['\n', '\r'], " ")
        };
        let _ = writeln!(text, "{:width$} {value}", format!("{key}:"));
    }
    text
}

/// Columns separated by at least two spaces; the last column is not padded.
struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    fn new(headers: [&str; N]) -> Table<N> {
        Table {
            rows: vec![headers.map(str::to_owned)],
        }
    }

    fn row(&mut self, cells: [String; N]) {
        // Line breaks or tabs in a value (a comment, say) would break the columns.
        self.rows.push(cells.map(|cell| {
            let cell = cell.replace(['\n', '\r', '\t'], " ");
            if cell.is_empty() {
                NONE.to_owned()
            } else {
                cell
            }
        }));
    }

    fn render(&self) -> String {
        let mut widths = [0; N];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:width$}  ");
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// [`Self::render`] with every line indented by two spaces, to stand under a `key:`
    /// line of [`fields`].
    fn render_indented(&self) -> String {
        let mut text = String::new();
        for line in self.render().lines() {
            let _ = writeln!(text, "  {line}");
        }
        text
    }
}

/// A view as `-o json` prints it, for the tests of every view.
#[cfg(test)]
fn to_json(view: &impl Render) -> serde_json::Value {
    let text = render(view, OutputFormat::Json).expect("renders");
    serde_json::from_str(&text).expect("valid JSON")
}

#[cfg(test)]
mod tests {
    use berth_common::proto;

    use super::*;

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let view = TokenListView::from(proto::ListTokensResponse {
            tokens: vec![
                proto::TokenInfo {
                    id: "a".into(),
                    role: proto::Role::User as i32,
                    owner: "alice".into(),
                    comment: "two\nlines".into(),
                    ..Default::default()
                },
                proto::TokenInfo {
                    id: "bbbb".into(),
                    role: proto::Role::Admin as i32,
                    owner: "root".into(),
                    ..Default::default()
                },
            ],
        });
        let table = view.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID    ROLE   OWNER  "), "{table}");
        assert!(lines[1].starts_with("a     user   alice  "), "{table}");
        assert!(lines[1].ends_with("two lines"), "{table}");
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{table}");
    }

    #[test]
    fn sizes_are_readable_in_tables() {
        assert_eq!(size(256 << 20), "256MiB");
        assert_eq!(size(1 << 30), "1GiB");
        assert_eq!(size(1500), "1500B");
        assert_eq!(size(0), "0B");
    }
}
