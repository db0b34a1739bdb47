//! `berth-pg run` as the test run uses it: the real binary around a real cluster, with a
//! shell script as COMMAND. What a user relies on is that COMMAND can reach the cluster, that
//! its exit code comes back, and that nothing is left behind however it ends.

#![expect(
    clippy::unwrap_used,
    reason = "in a test, a failed unwrap is a failed test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::process::{Child, Command};

const BERTH_PG: &str = env!("CARGO_BIN_EXE_berth-pg");
/// Generous: the cluster's start-up competes with the rest of the suite for the CPU.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A scratch area: `clusters/` is given to `--dir`, `work/` is COMMAND's working directory
/// (where the scripts below leave files for the test to find).
struct Scratch {
    _tmp: TempDir,
    clusters: PathBuf,
    work: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        // PostgreSQL runs as `postgres` when we are root, and must reach its directory.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let clusters = tmp.path().join("clusters");
        let work = tmp.path().join("work");
        std::fs::create_dir(&clusters).unwrap();
        std::fs::create_dir(&work).unwrap();
        Scratch {
            _tmp: tmp,
            clusters,
            work,
        }
    }

    /// `berth-pg run --dir clusters -- sh -c SCRIPT`, started in `work/`.
    fn run(&self, script: &str) -> Command {
        let mut command = Command::new(BERTH_PG);
        command
            .arg("run")
            .arg("--dir")
            .arg(&self.clusters)
            .args(["--", "sh", "-c", script])
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Waits until COMMAND has written `name` in `work/` and returns its contents.
    async fn wait_for_file(&self, name: &str) -> String {
        let path = self.work.join(name);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(contents) = std::fs::read_to_string(&path) {
                return contents.trim().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "COMMAND never wrote {}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The one cluster directory `berth-pg` made in `clusters/`.
    fn cluster_dir(&self) -> PathBuf {
        let entries: Vec<PathBuf> = std::fs::read_dir(&self.clusters)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.into_iter().next().unwrap()
    }

    /// Nothing left in `clusters/`, and no live process started on that cluster.
    fn assert_nothing_left(&self, cluster: Option<&Path>) {
        let left: Vec<PathBuf> = std::fs::read_dir(&self.clusters)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        if let Some(cluster) = cluster {
            let running = processes_mentioning(cluster);
            assert!(
                running.is_empty(),
                "still running on {cluster:?}: {running:?}"
            );
        }
    }
}

/// Live processes whose command line names `path` (the postmaster's `-D` names its data
/// directory; a zombie's command line is empty, so it does not count).
fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.ok()?.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(&needle).then_some(cmdline)
        })
        .collect()
}

/// Waits for `berth-pg` to exit and returns its exit code and stderr.
async fn finish(child: Child) -> (i32, String) {
    let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .expect("berth-pg did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output
        .status
        .code()
        .unwrap_or_else(|| panic!("berth-pg was killed ({}); stderr:\n{stderr}", output.status));
    (code, stderr)
}

/// A script that publishes its URL in `url`, then runs `rest`.
fn publishing_url(rest: &str) -> String {
    format!("echo \"$BERTH_TEST_PG_URL\" > url.tmp && mv url.tmp url; {rest}")
}

#[tokio::test]
async fn command_reaches_a_test_cluster_and_its_exit_code_comes_back() {
    let scratch = Scratch::new();
    let child = scratch
        .run(&publishing_url(
            "while [ ! -e done ]; do sleep 0.05; done; exit 7",
        ))
        .spawn()
        .unwrap();
    let url = scratch.wait_for_file("url").await;
    let cluster = scratch.cluster_dir();
    assert_eq!(
        url,
        format!("postgres://berth@/postgres?host={}/run", cluster.display())
    );

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"));
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('synchronous_commit'), \
                    current_setting('full_page_writes'), current_setting('max_connections'), \
                    current_setting('listen_addresses')",
            &[],
        )
        .await
        .unwrap();
    let settings: Vec<String> = (0..5).map(|i| row.get(i)).collect();
    assert_eq!(settings, ["off", "off", "off", "500", ""]);
    // The suite clones a database per test, so the URL's user must be able to.
    for sql in ["CREATE DATABASE scratch", "DROP DATABASE scratch"] {
        client.batch_execute(sql).await.unwrap();
    }
    drop(client);
    connection.await.unwrap().unwrap();

    std::fs::write(scratch.work.join("done"), "").unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 7, "stderr:\n{stderr}");
    scratch.assert_nothing_left(Some(&cluster));
}

/// SIGINT (Ctrl-C) and SIGTERM (a CI timeout) reach COMMAND, and the clean-up waits for it.
async fn signal_is_passed_on_and_the_cluster_removed(signal: Signal) {
    let scratch = Scratch::new();
    let name = &signal.as_str()[3..];
    // The trap is set before the URL is published, so it is in place when the signal comes.
    let script = format!(
        "trap 'echo {name} > got; exit 42' {name}; {}",
        publishing_url("while :; do sleep 0.05; done")
    );
    let child = scratch.run(&script).spawn().unwrap();
    scratch.wait_for_file("url").await;
    let cluster = scratch.cluster_dir();
    assert!(
        !processes_mentioning(&cluster).is_empty(),
        "no postmaster found for {cluster:?}"
    );

    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    kill(pid, signal).unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(
        code, 42,
        "COMMAND did not get {signal} (is it ignored by whoever started this test?); \
         stderr:\n{stderr}"
    );
    assert_eq!(scratch.wait_for_file("got").await, name);
    scratch.assert_nothing_left(Some(&cluster));
}

#[tokio::test]
async fn sigint_is_passed_on_and_the_cluster_removed() {
    signal_is_passed_on_and_the_cluster_removed(Signal::SIGINT).await;
}

#[tokio::test]
async fn sigterm_is_passed_on_and_the_cluster_removed() {
    signal_is_passed_on_and_the_cluster_removed(Signal::SIGTERM).await;
}

#[tokio::test]
async fn a_signal_ignored_at_start_stays_ignored_for_the_command() {
    let scratch = Scratch::new();
    // As under `nohup`: SIGHUP is ignored before berth-pg starts.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("trap '' HUP; exec \"$0\" run --dir \"$1\" -- sh -c 'kill -HUP $$; echo survived'")
        .arg(BERTH_PG)
        .arg(&scratch.clusters)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(TIMEOUT, command.output())
        .await
        .expect("berth-pg did not exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "survived");
    scratch.assert_nothing_left(None);
}

#[tokio::test]
async fn missing_postgresql_binaries_are_one_line_saying_what_to_set() {
    let scratch = Scratch::new();
    let child = scratch
        .run("touch ran")
        .env("BERTH_PG_BIN_DIR", "/nonexistent")
        .spawn()
        .unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 125, "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("/nonexistent")
            && lines[0].contains("BERTH_PG_BIN_DIR")
            && lines[0].contains("initdb"),
        "{stderr}"
    );
    assert!(!scratch.work.join("ran").exists(), "COMMAND ran anyway");
    scratch.assert_nothing_left(None);
}

#[tokio::test]
async fn a_command_that_does_not_exist_exits_127_and_leaves_nothing() {
    let scratch = Scratch::new();
    let mut command = Command::new(BERTH_PG);
    command
        .arg("run")
        .arg("--dir")
        .arg(&scratch.clusters)
        .args(["--", "/nonexistent/command"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let (code, stderr) = finish(command.spawn().unwrap()).await;
    assert_eq!(code, 127, "stderr:\n{stderr}");
    assert!(stderr.contains("/nonexistent/command"), "{stderr}");
    scratch.assert_nothing_left(None);
}

#[tokio::test]
async fn a_command_killed_by_a_signal_exits_like_a_shell_says() {
    let scratch = Scratch::new();
    let child = scratch.run("kill -KILL $$").spawn().unwrap();
    let (code, stderr) = finish(child).await;
    assert_eq!(code, 128 + 9, "stderr:\n{stderr}");
    scratch.assert_nothing_left(None);
}
