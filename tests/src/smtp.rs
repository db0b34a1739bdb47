//! A real SMTP server for the email tests: `scripts/smtp-sink.py` (aiosmtpd) on a free
//! loopback port, writing each message it receives to a directory of its own.
//!
//! Its Python comes from `BERTH_TEST_SMTP_PYTHON` (set by `scripts/test`) or the
//! `.venv-smtp` that `scripts/install-smtp` makes; without either the test fails saying
//! what to run.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running sink; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: Child,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Ok(path) = std::env::var("BERTH_TEST_SMTP_PYTHON")
        && !path.is_empty()
    {
        return PathBuf::from(path);
    }
    let venv = repo_root().join(".venv-smtp/bin/python");
    assert!(
        venv.exists(),
        "the email tests need a local SMTP server (aiosmtpd): run scripts/install-smtp, or run the tests with ./scripts/test (which installs it); {} is missing",
        venv.display()
    );
    venv
}

impl SmtpSink {
    /// Starts a sink and waits until it listens.
    pub async fn start() -> SmtpSink {
        let port = crate::free_port();
        let dir = tempfile::tempdir().unwrap();
        let python = python();
        let mut child = Command::new(&python)
            .arg(repo_root().join("scripts/smtp-sink.py"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} scripts/smtp-sink.py: {e} (run scripts/install-smtp)",
                    python.display()
                )
            });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.trim() == "ready" => {}
            other => panic!(
                "the SMTP sink did not start: {other:?} (is aiosmtpd installed? run scripts/install-smtp)"
            ),
        }
        SmtpSink {
            port,
            dir,
            _child: child,
        }
    }

    /// The messages received so far, raw, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Waits until at least `count` messages arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP sink got {} messages within {timeout:?}, expected {count}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
