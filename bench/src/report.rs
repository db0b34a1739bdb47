//! What a scenario hands back: a table for people and JSON for keeping.
//!
//! Figures without their circumstances cannot be compared later, so every JSON file also
//! records the machine (CPUs, memory), the date, the git commit the binary was run from
//! and whether it was a `--quick` run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

/// Whether this run uses the small `--quick` sizes; set once by `main`.
static QUICK: AtomicBool = AtomicBool::new(false);

/// Records whether this is a `--quick` run, for the JSON files.
pub fn set_quick(quick: bool) {
    QUICK.store(quick, Ordering::Relaxed);
}

/// One scenario's results.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario's name (`noop`, `idle-streams`, ...).
    pub scenario: String,
    /// (label, value) lines of the printed table, in order; put goals in the value, e.g.
    /// `"4.1 ms (goal ≤ 5 ms)"`.
    pub rows: Vec<(String, String)>,
    /// Machine-readable figures.
    pub json: serde_json::Value,
}

impl Report {
    /// Prints the table on stdout.
    pub fn print(&self) {
        let width = self
            .rows
            .iter()
            .map(|(label, _)| label.chars().count())
            .max()
            .unwrap_or(0);
        println!();
        println!("== {} ==", self.scenario);
        for (label, value) in &self.rows {
            let pad = width - label.chars().count();
            println!("  {label}{}  {value}", " ".repeat(pad));
        }
    }

    /// Writes `<dir>/<scenario>-<unix seconds>.json` (creating `dir`) and returns its path.
    pub fn write_json(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let now = std::time::SystemTime::now();
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let table: serde_json::Map<String, serde_json::Value> = self
            .rows
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let document = serde_json::json!({
            "scenario": self.scenario,
            "date": humantime::format_rfc3339_seconds(now).to_string(),
            "git_commit": git_commit(),
            "quick": QUICK.load(Ordering::Relaxed),
            "machine": machine(),
            "results": self.json,
            "table": table,
        });
        let path = dir.join(format!("{}-{secs}.json", self.scenario));
        let text = serde_json::to_string_pretty(&document).context("cannot render JSON")?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// `git rev-parse HEAD` in the current directory, when git and a repository are there.
fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// CPUs, memory and CPU model of this machine.
fn machine() -> serde_json::Value {
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_bytes = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_owned());
    serde_json::json!({
        "nproc": nproc,
        "memory_bytes": memory_bytes,
        "cpu_model": cpu_model,
        "kernel": kernel,
    })
}

/// Formats a duration in milliseconds with a sensible precision (`n/a` for NaN).
pub fn ms(value: f64) -> String {
    if value.is_nan() {
        "n/a".to_owned()
    } else if value < 10.0 {
        format!("{value:.2} ms")
    } else {
        format!("{value:.1} ms")
    }
}

/// Formats a byte count in MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
