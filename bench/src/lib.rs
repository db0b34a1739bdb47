//! `berth-bench`: Berth's benchmark program.
//!
//! `berth-bench <noop|idle-streams|container|logs|chaos|all> [--quick] [--out DIR]` starts what a
//! scenario needs by itself (a private PostgreSQL, the release `berth-server`, workers),
//! measures, prints a table and writes the figures as JSON to `DIR` (`bench-results` by
//! default). Goals are printed next to the figures; nothing is asserted, because a
//! benchmark's job is to report, and timing depends on the machine.
//!
//! `chaos` (with `--seed N` and `--duration D`) is the exception to "nothing is asserted":
//! it checks invariants after injected faults, and fails when one is violated.
//!
//! Build every binary first: `cargo build --release --bins`. A failure ends the run with
//! one `error:` line and status 1, after the scenario's processes were cleaned up; Ctrl-C
//! cleans up too.

pub mod report;
pub mod scenarios;
pub mod sim;
pub mod stack;
