//! The scenarios: each starts the stack it needs, measures one thing and returns a
//! [`Report`]. See each module for what it measures and why.

pub mod artifacts;
pub mod backlog;
pub mod chaos;
pub mod container;
pub mod idle;
pub mod logs;
pub mod noop;
pub mod peer;
pub mod topics;
pub mod triggers;

use std::path::PathBuf;
use std::time::Duration;

use crate::report::Report;

/// Options every scenario gets.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run at small sizes (every scenario together in under two minutes).
    pub quick: bool,
    /// Where JSON results go (default `bench-results`).
    pub out_dir: PathBuf,
    /// How long a scenario that runs for a time runs (`chaos`); its own default if `None`.
    pub duration: Option<Duration>,
    /// The seed of a scenario that draws at random (`chaos`); from the clock if `None`.
    pub seed: Option<u64>,
    /// How many workspaces `noop` spreads its requests over, one run per entry (with two
    /// or more entries it also prints each figure's ratio to the first); `[1]` unless
    /// given, `[1, 4]` for `all`.
    pub workspaces: Vec<usize>,
}

/// A scenario the command line can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Dispatch throughput and latency with simulated workers, against pgbench.
    Noop,
    /// Dispatch latency and throughput with 0 to 1,000,000 requests pending that no
    /// connected worker can take.
    Backlog,
    /// Server memory and CPU with 10,000 idle worker streams.
    IdleStreams,
    /// Berth's `noop` figures next to pgqueuer's on the same cluster, with the ratios.
    Peer,
    /// Real containers through real workers.
    Container,
    /// Log throughput.
    Logs,
    /// Upload and download of one large file through Berth against a plain copy to the
    /// same store (local directory and S3), and a dedup hit.
    Artifacts,
    /// Schedule rules firing: exactness (double or lost firings) and punctuality.
    Triggers,
    /// Publish → deliver → ack throughput and latency with 4 publishers and 4
    /// consumers, against pgbench.
    Topics,
    /// Mixed load under random faults (workers, connections, PostgreSQL, replicas), then
    /// the invariants.
    Chaos,
    /// Every scenario, one after another.
    All,
}

impl Scenario {
    /// The scenarios `all` runs, in order.
    pub const EACH: [Scenario; 10] = [
        Scenario::Noop,
        Scenario::Peer,
        Scenario::Backlog,
        Scenario::IdleStreams,
        Scenario::Container,
        Scenario::Logs,
        Scenario::Artifacts,
        Scenario::Triggers,
        Scenario::Topics,
        Scenario::Chaos,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Noop => "noop",
            Scenario::Peer => "peer",
            Scenario::Backlog => "backlog",
            Scenario::IdleStreams => "idle-streams",
            Scenario::Container => "container",
            Scenario::Logs => "logs",
            Scenario::Artifacts => "artifacts",
            Scenario::Triggers => "triggers",
            Scenario::Topics => "topics",
            Scenario::Chaos => "chaos",
            Scenario::All => "all",
        }
    }

    /// Runs one scenario (not `All`).
    pub async fn run(self, opts: &Options) -> anyhow::Result<Report> {
        match self {
            Scenario::Noop => noop::run(opts).await,
            Scenario::Peer => peer::run(opts).await,
            Scenario::Backlog => backlog::run(opts).await,
            Scenario::IdleStreams => idle::run(opts).await,
            Scenario::Container => container::run(opts).await,
            Scenario::Logs => logs::run(opts).await,
            Scenario::Artifacts => artifacts::run(opts).await,
            Scenario::Triggers => triggers::run(opts).await,
            Scenario::Topics => topics::run(opts).await,
            Scenario::Chaos => chaos::run(opts).await,
            Scenario::All => anyhow::bail!("`all` is not a single scenario"),
        }
    }
}
