//! The worker's spool disk fills up during a chatty job: the job still ends as it would
//! have, its log is marked incomplete with the reason (on the attempt and as a note in the
//! log), the worker keeps running, and the next job's log is whole again.
//!
//! The spool sits on a small tmpfs this test mounts, so the test must run as root (with
//! the right to mount); it fails saying so otherwise.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: a failed call should fail the test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_common::proto::{ContainerSpec, WorkResult};
use berth_tests::docker::ensure_test_image;
use berth_tests::logs::Logs;
use berth_tests::worker::TestWorker;
use berth_tests::{TestServer, result, submit, wait_terminal};

/// The spool's file system: far less than the chatty job writes.
const SPOOL_BYTES: u64 = 256 * 1024;
/// Lines the chatty job prints: about 1.7 MB, so the spool fills early on.
const LINES: u32 = 20_000;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0755"))
            .arg("tmpfs")
            .arg(path)
            .output()
            .unwrap_or_else(|e| panic!("this test needs the `mount` command: {e}"));
        assert!(
            output.status.success(),
            "this test needs to mount a small tmpfs for the worker's spool (run it as root \
             with the right to mount file systems); mount said: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// The line the chatty job prints `i`-th.
fn expected_line(i: u32) -> String {
    format!("line {i:05} .............................................................\n")
}

fn chatty(image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.to_owned(),
        command: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "i=0; while [ $i -lt {LINES} ]; do printf 'line %05d .............................................................\\n' $i; i=$((i+1)); done"
            ),
        ],
        timeout: Some(berth_tests::secs(120)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_spool_disk_marks_the_log_incomplete_and_loses_nothing_else() {
    let image = ensure_test_image().await;
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool, SPOOL_BYTES);
    let server = TestServer::start().await;
    let mut worker = TestWorker::start_spooling_in(&server, &[], Some(&spool)).await;
    worker.wait_connected(&server).await;

    let submitted = submit(&server, chatty(image)).await;
    let ended = wait_terminal(&server, &submitted.id).await;
    // The job itself ran to its end: a full spool is the log's problem, not the job's.
    assert_eq!(result(&ended), WorkResult::Success, "{ended:?}");
    assert_eq!(ended.exit_code, Some(0), "{ended:?}");
    let attempt = ended.attempts.last().unwrap();
    assert!(
        attempt.log_incomplete.contains("disk is full")
            && attempt
                .log_incomplete
                .contains("bytes of output are missing"),
        "the attempt must say why its log is incomplete: {attempt:?}"
    );

    let logs = Logs::read(&server, &submitted.id).await;
    let notes = logs.text(4);
    assert!(
        notes.contains("[berth] log incomplete:") && notes.contains("disk is full"),
        "the log must carry the note: {notes:?}"
    );
    // What was stored of stdout is exactly the start of the job's output: the rest is
    // missing, nothing is garbled, repeated or has holes.
    let stdout = logs.bytes(1);
    let expected: String = (0..LINES).map(expected_line).collect();
    assert!(
        stdout.len() < expected.len() && stdout.len() > 1000,
        "the spool was meant to fill up part of the way; {} of {} bytes arrived",
        stdout.len(),
        expected.len()
    );
    assert!(
        expected.as_bytes().starts_with(&stdout),
        "the stored stdout is not a prefix of the output"
    );
    assert!(
        attempt
            .log_incomplete
            .contains(&format!("stdout after byte {}", stdout.len())),
        "the reason must say where stdout ends: {attempt:?}"
    );

    // The worker lived through it, freed the spool, and the next job's log is whole.
    assert!(worker.is_running(), "the worker exited:\n{}", worker.log());
    assert!(!worker.log().contains("panicked"), "{}", worker.log());
    let quiet = submit(
        &server,
        ContainerSpec {
            image: image.to_owned(),
            command: vec!["sh".into(), "-c".into(), "echo after".into()],
            ..Default::default()
        },
    )
    .await;
    let after = wait_terminal(&server, &quiet.id).await;
    assert_eq!(result(&after), WorkResult::Success, "{after:?}");
    let attempt = after.attempts.last().unwrap();
    assert_eq!(attempt.log_incomplete, "", "{attempt:?}");
    let logs = Logs::read(&server, &quiet.id).await;
    assert_eq!(logs.text(1), "after\n");
    assert_eq!(logs.text(4), "", "no note on a complete log");

    worker.terminate(Duration::from_secs(30)).await;
    server.stop().await;
}
