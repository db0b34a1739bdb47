//! The database going away under a running server: the real `berth-server` binary, real
//! `berth-worker` processes on Docker, and a PostgreSQL postmaster killed with SIGKILL.
//!
//! What an operator relies on is checked from outside, as they would see it: health turns
//! NOT_SERVING soon after the postmaster dies and SERVING once the database is back; calls
//! meanwhile answer UNAVAILABLE saying the database is being recovered; the server
//! restarts its own embedded PostgreSQL (and says so in its log), or exits non-zero with
//! a message naming what died, what was tried and where the log is when it cannot; and
//! every request accepted before and during the outage ends exactly once, with no two
//! attempts of it running at once and its whole log stored.
//!
//! The external-database case starts a cluster of its own with `berth_pg`: the shared
//! test cluster other tests use is never touched. It also runs a second replica, whose
//! sweep sees every lease run out during the outage.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_common::client::BearerAuth;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::work_request_service_client::WorkRequestServiceClient;
use berth_common::proto::worker_service_client::WorkerServiceClient;
use berth_common::proto::{
    CreateTokenRequest, GetWorkRequestRequest, GetWorkerRequest, LogChunk, Role, StreamLogsRequest,
    SubmitWorkRequestRequest, WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_pg::{EmbeddedOptions, EmbeddedPostgres};
use berth_tests::docker::ensure_test_image;
use berth_tests::spec::sh;
use berth_tests::{Authed, binary, eventually, free_port, unique_name};
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// A first start of the embedded database runs initdb, which is slow on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long each observable step of an outage (noticed, recovered) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(40);
/// How long the requests get to end once the database is back.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
/// Short protocol timings, so that a lease or a hand-off deadline runs out during the
/// outage: that is what the server must not act on.
const CONFIG: &str = "heartbeat_interval = \"1s\"\nlease_ttl = \"4s\"\nhandoff_deadline = \"3s\"\nshutdown_grace = \"5s\"\n";
/// For the replicas on an external database: leases are renewed every 2 s but swept every
/// 100 ms, so a sweep right after the outage would find the worker's lease run out before
/// its replica renewed it.
const REPLICA_CONFIG: &str = "heartbeat_interval = \"2s\"\nlease_ttl = \"4s\"\nhandoff_deadline = \"3s\"\nsweep_interval = \"100ms\"\nshutdown_grace = \"5s\"\n";

/// A `berth-server` process, its data directory and its output.
struct Server {
    child: Child,
    port: u16,
    data: tempfile::TempDir,
    logs: tempfile::TempDir,
}

impl Server {
    /// Starts the server with `extra` arguments and `config` as its TOML file, and waits
    /// until it is SERVING.
    async fn start(extra: &[&str], config: &str) -> Server {
        let data = reachable_tempdir();
        let logs = tempfile::tempdir().unwrap();
        let port = free_port();
        let config_path = logs.path().join("berth.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(binary("berth-server"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BERTH_") {
                command.env_remove(key);
            }
        }
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(data.path().join("server"))
            .arg("--config")
            .arg(&config_path)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(logs.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(logs.path().join("stderr")).unwrap())
            .kill_on_drop(true);
        let mut server = Server {
            child: command.spawn().unwrap(),
            port,
            data,
            logs,
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while server.health().await != Some(ServingStatus::Serving) {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "berth-server exited ({status}) before serving:\n{}",
                    server.output()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "berth-server did not serve within {START_TIMEOUT:?}:\n{}",
                server.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.data.path().join("server")
    }

    /// The embedded cluster's PGDATA.
    fn pg_data(&self) -> PathBuf {
        self.data_dir().join("postgres").join("data")
    }

    fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Everything the server printed so far.
    fn output(&self) -> String {
        let read = |name: &str| {
            String::from_utf8_lossy(&std::fs::read(self.logs.path().join(name)).unwrap())
                .into_owned()
        };
        format!("{}{}", read("stdout"), read("stderr"))
    }

    async fn health(&self) -> Option<ServingStatus> {
        berth_tests::health(&self.url(), None).await
    }

    async fn wait_health(&self, wanted: ServingStatus) {
        eventually(&format!("health {wanted:?}"), STEP_TIMEOUT, || async {
            (self.health().await == Some(wanted)).then_some(())
        })
        .await;
    }

    async fn requests(&self) -> WorkRequestServiceClient<Authed> {
        let channel = berth_common::client::endpoint(&self.url(), None)
            .unwrap()
            .connect_lazy();
        WorkRequestServiceClient::with_interceptor(channel, BearerAuth::new(&self.admin_token()))
    }

    async fn worker_token(&self, name: &str) -> String {
        let channel = berth_common::client::connect(&self.url(), None)
            .await
            .unwrap();
        TokenServiceClient::with_interceptor(channel, BearerAuth::new(&self.admin_token()))
            .create_token(CreateTokenRequest {
                role: Role::Worker as i32,
                name: name.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    async fn worker_connected(&self, name: &str) -> bool {
        let Ok(channel) = berth_common::client::connect(&self.url(), None).await else {
            return false;
        };
        WorkerServiceClient::with_interceptor(channel, BearerAuth::new(&self.admin_token()))
            .get_worker(GetWorkerRequest {
                name: name.to_owned(),
            })
            .await
            .is_ok_and(|worker| worker.into_inner().connected)
    }

    /// Waits for the process to exit; returns its exit code.
    async fn wait_exit(&mut self, within: Duration) -> i32 {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "berth-server did not exit within {within:?}:\n{}",
                    self.output()
                )
            })
            .unwrap();
        status.code().unwrap_or_else(|| {
            panic!(
                "berth-server ended by a signal ({status}):\n{}",
                self.output()
            )
        })
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("berth-server has exited");
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), signal).unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only a failed test gets here with the server running: stop it, then anything of
        // its cluster that is left (a stopped postmaster is woken so it can go).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.start_kill();
        }
        if let Some(pid) = postmaster_pid(&self.pg_data()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        }
    }
}

/// A `berth-worker` process.
struct Worker {
    name: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Worker {
    async fn start(server: &Server, concurrency: u32) -> Worker {
        let name = unique_name("w");
        let token = server.worker_token(&name).await;
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
        let child = Command::new(binary("berth-worker"))
            .args(["--server", &server.url(), "--name", &name])
            .args(["--concurrency", &concurrency.to_string()])
            .arg("--spool-dir")
            .arg(dir.path().join("spool"))
            .env("BERTH_TOKEN", &token)
            .env_remove("BERTH_TOKEN_FILE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let worker = Worker { name, child, dir };
        eventually(
            &format!("worker {} to connect", worker.name),
            STEP_TIMEOUT,
            || async { server.worker_connected(&worker.name).await.then_some(()) },
        )
        .await;
        worker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("worker.log")).unwrap_or_default()
    }

    /// SIGTERM; the worker drains (nothing runs by then) and exits 0.
    async fn stop(mut self) {
        let pid = self.child.id().unwrap();
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGTERM).unwrap();
        let status = tokio::time::timeout(STEP_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the worker did not stop:\n{}", self.log()))
            .unwrap();
        assert!(status.success(), "worker exited {status}:\n{}", self.log());
    }
}

/// A temp dir the unprivileged PostgreSQL user can walk through (tempdirs are 0700).
fn reachable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The pid in `pg_data/postmaster.pid`, if there is one.
fn postmaster_pid(pg_data: &Path) -> Option<i32> {
    std::fs::read_to_string(pg_data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` runs (an exited process not reaped yet does not).
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
}

/// Kills the postmaster of `pg_data` with SIGKILL and waits until it is gone.
async fn kill_postmaster(pg_data: &Path) -> i32 {
    let pid = postmaster_pid(pg_data).expect("a running postmaster has a pid file");
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    eventually("the killed postmaster to be gone", STEP_TIMEOUT, || async {
        (!alive(pid)).then_some(())
    })
    .await;
    pid
}

/// The job each request runs: its own marker on stdout before and after a pause, long
/// enough that containers run through the outage.
fn job(n: usize) -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(sh(&format!("echo begin {n}; sleep 2; echo end {n}"))),
        ..Default::default()
    }
}

fn expected_log(n: usize) -> String {
    format!("begin {n}\nend {n}\n")
}

/// What the load saw: requests the server accepted, and every refusal.
#[derive(Default)]
struct Load {
    accepted: Vec<(usize, String)>,
    refused: Vec<tonic::Status>,
}

/// Submits a request every 150 ms until `stop`, numbering them from `first`.
fn start_load(
    client: WorkRequestServiceClient<Authed>,
    first: usize,
    stop: tokio_util::sync::CancellationToken,
) -> (Arc<Mutex<Load>>, tokio::task::JoinHandle<()>) {
    let load = Arc::new(Mutex::new(Load::default()));
    let seen = load.clone();
    let task = tokio::spawn(async move {
        let mut client = client;
        let mut n = first;
        while !stop.is_cancelled() {
            let submitted =
                tokio::time::timeout(Duration::from_secs(10), client.submit_work_request(job(n)))
                    .await;
            match submitted {
                Ok(Ok(request)) => {
                    seen.lock()
                        .unwrap()
                        .accepted
                        .push((n, request.into_inner().id));
                    n += 1;
                }
                Ok(Err(status)) => seen.lock().unwrap().refused.push(status),
                Err(_) => seen
                    .lock()
                    .unwrap()
                    .refused
                    .push(tonic::Status::deadline_exceeded("no answer within 10 s")),
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    (load, task)
}

fn is_terminal(request: &WorkRequest) -> bool {
    matches!(
        WorkRequestStatus::try_from(request.status),
        Ok(WorkRequestStatus::Completed | WorkRequestStatus::Aborted)
    )
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> Option<SystemTime> {
    timestamp.map(|t| SystemTime::try_from(*t).unwrap())
}

async fn stdout_of(client: &mut WorkRequestServiceClient<Authed>, id: &str) -> String {
    let mut stream = client
        .stream_logs(StreamLogsRequest {
            id: id.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut chunks: Vec<LogChunk> = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    let mut bytes = Vec::new();
    for chunk in chunks.iter().filter(|c| c.stream == 1) {
        assert_eq!(
            chunk.offset,
            bytes.len() as u64,
            "{id}: a gap or overlap in stdout"
        );
        bytes.extend_from_slice(&chunk.data);
    }
    String::from_utf8(bytes).unwrap()
}

/// The checks after an outage: every accepted request ended once, successfully, with one
/// attempt (none overlapping another) and its whole log.
async fn assert_all_ended_once(server: &Server, accepted: &[(usize, String)], worker: &Worker) {
    let mut client = server.requests().await;
    for (n, id) in accepted {
        let request = eventually(
            &format!("request {n} ({id}) to end"),
            FINISH_TIMEOUT,
            || {
                let mut client = client.clone();
                async move {
                    let request = client
                        .get_work_request(GetWorkRequestRequest { id: id.clone() })
                        .await
                        .ok()?
                        .into_inner();
                    is_terminal(&request).then_some(request)
                }
            },
        )
        .await;
        let attempts = &request.attempts;
        assert_eq!(
            (
                WorkRequestStatus::try_from(request.status).unwrap(),
                WorkResult::try_from(request.result).unwrap()
            ),
            (WorkRequestStatus::Completed, WorkResult::Success),
            "request {n} ({id}) did not succeed: {request:?}\nworker log:\n{}\nserver:\n{}",
            worker.log(),
            server.output()
        );
        assert_eq!(
            attempts.len(),
            1,
            "request {n} ({id}) ran more than once: {attempts:?}\nserver:\n{}",
            server.output()
        );
        let mut spans: Vec<(SystemTime, SystemTime)> = attempts
            .iter()
            .filter_map(|a| Some((time(a.started_at.as_ref())?, time(a.finished_at.as_ref())?)))
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "request {n}: attempts overlap: {attempts:?}"
            );
        }
        assert_eq!(attempts[0].exit_code, Some(0), "request {n}: {attempts:?}");
        assert_eq!(
            stdout_of(&mut client, id).await,
            expected_log(*n),
            "request {n} ({id}): the log is incomplete"
        );
    }
}

/// Runs load through an outage that `break_it` starts and `mend_it` ends (it may do
/// nothing when the server mends it itself), and checks everything an operator relies on.
async fn load_through_outage<B, M>(server: &Server, break_it: B, mend_it: M)
where
    B: AsyncFnOnce(),
    M: AsyncFnOnce(),
{
    ensure_test_image().await;
    let worker = Worker::start(server, 4).await;
    let mut client = server.requests().await;
    let mut before = Vec::new();
    for n in 0..6 {
        let id = client
            .submit_work_request(job(n))
            .await
            .unwrap()
            .into_inner()
            .id;
        before.push((n, id));
    }
    // Containers running when the database goes away.
    eventually("containers to run", STEP_TIMEOUT, || {
        let mut client = client.clone();
        let ids: Vec<String> = before.iter().map(|(_, id)| id.clone()).collect();
        async move {
            let mut running = 0;
            for id in ids {
                let request = client
                    .get_work_request(GetWorkRequestRequest { id })
                    .await
                    .ok()?
                    .into_inner();
                running += usize::from(request.attempts.iter().any(|a| a.started_at.is_some()));
            }
            (running >= 3).then_some(())
        }
    })
    .await;
    let stop_load = tokio_util::sync::CancellationToken::new();
    let (load, load_task) = start_load(client.clone(), 100, stop_load.clone());

    break_it().await;
    server.wait_health(ServingStatus::NotServing).await;
    let refusal = eventually(
        "a call to be refused while the database is away",
        STEP_TIMEOUT,
        || {
            let mut client = client.clone();
            let id = before[0].1.clone();
            async move {
                client
                    .get_work_request(GetWorkRequestRequest { id })
                    .await
                    .err()
            }
        },
    )
    .await;
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    assert!(
        refusal
            .message()
            .contains("database is unavailable and is being recovered"),
        "{refusal:?}"
    );
    mend_it().await;
    server.wait_health(ServingStatus::Serving).await;

    // Load goes on after the recovery until a few more requests were taken.
    let accepted_before_recovery = load.lock().unwrap().accepted.len();
    eventually("submissions to be accepted again", STEP_TIMEOUT, || async {
        (load.lock().unwrap().accepted.len() >= accepted_before_recovery + 3).then_some(())
    })
    .await;
    stop_load.cancel();
    load_task.await.unwrap();
    let load = std::mem::take(&mut *load.lock().unwrap());
    for status in &load.refused {
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "a submission failed otherwise: {status:?}"
        );
        assert!(status.message().contains("being recovered"), "{status:?}");
        assert!(
            !status.message().contains("postgres"),
            "connection details leaked: {status:?}"
        );
    }
    let mut all = before;
    all.extend(load.accepted);
    assert_all_ended_once(server, &all, &worker).await;

    let output = server.output();
    assert!(output.contains("the database is unreachable"), "{output}");
    assert!(
        output.contains("the database is reachable again"),
        "{output}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_embedded_postgres_is_restarted_and_no_request_is_lost() {
    let mut server = Server::start(&[], CONFIG).await;
    let pg_data = server.pg_data();
    let killed = Arc::new(Mutex::new(None));
    let noted = killed.clone();
    load_through_outage(
        &server,
        async || *noted.lock().unwrap() = Some(kill_postmaster(&pg_data).await),
        async || {},
    )
    .await;
    let old = killed.lock().unwrap().unwrap();
    let new = postmaster_pid(&pg_data).unwrap();
    assert!(
        new != old && alive(new),
        "no new postmaster ({old} -> {new})"
    );
    let output = server.output();
    assert!(
        output.contains("the embedded PostgreSQL died; restarting it"),
        "{output}"
    );
    assert!(
        output.contains("restarted the embedded PostgreSQL"),
        "{output}"
    );

    server.signal(Signal::SIGTERM);
    assert_eq!(
        server.wait_exit(STEP_TIMEOUT).await,
        0,
        "{}",
        server.output()
    );
    // The postmaster removes its pid file just before it exits.
    eventually(
        "the restarted postmaster to stop with the server",
        STEP_TIMEOUT,
        || async { (!alive(new)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_database_killed_and_restarted_loses_no_request() {
    // A cluster of this test's own: the shared one at BERTH_TEST_PG_URL stays untouched.
    let dir = reachable_tempdir();
    let pg = EmbeddedPostgres::start(&dir.path().join("pg"), EmbeddedOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot start a PostgreSQL for this test: {e}"));
    let url = pg.url("berth");
    let pg_data = pg.data_dir().to_owned();
    let pg = Arc::new(tokio::sync::Mutex::new(pg));
    let mut server = Server::start(&["--database-url", &url], REPLICA_CONFIG).await;
    // A second replica on the same database, with no worker of its own: its sweep sees
    // the worker's lease run out during the outage and must wait for the first replica
    // to renew it rather than take the worker for lost.
    let mut replica = Server::start(&["--database-url", &url], REPLICA_CONFIG).await;
    let restart = pg.clone();
    load_through_outage(
        &server,
        async || {
            kill_postmaster(&pg_data).await;
        },
        async || {
            // Away for longer than the lease TTL and the hand-off deadline: every lease
            // and every unanswered assignment has run out by the time it is back, and the
            // server must still not take its live worker for lost (the checks afterwards
            // find each request run exactly once).
            tokio::time::sleep(Duration::from_secs(6)).await;
            // The killed postmaster's backends may hold its shared memory for a moment.
            let mut pg = restart.lock().await;
            let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
            while let Err(e) = pg.restart().await {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "PostgreSQL did not restart: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await;
    assert!(
        !replica.output().contains("worker lost"),
        "the replica took the live worker for lost:\n{}",
        replica.output()
    );
    for server in [&mut server, &mut replica] {
        server.signal(Signal::SIGTERM);
        assert_eq!(
            server.wait_exit(STEP_TIMEOUT).await,
            0,
            "{}",
            server.output()
        );
    }
    pg.lock().await.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedded_postgres_that_cannot_be_restarted_stops_the_server_with_a_clear_message() {
    let mut server = Server::start(&[], CONFIG).await;
    let pg_data = server.pg_data();
    // The next start of this cluster fails: PostgreSQL refuses a configuration it cannot
    // parse. The running postmaster never rereads it.
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(pg_data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut conf, b"\nthis line is not a setting\n").unwrap();
    let pid = kill_postmaster(&pg_data).await;

    let code = server.wait_exit(STEP_TIMEOUT).await;
    let output = server.output();
    assert_ne!(code, 0, "{output}");
    let error = output
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{output}"));
    for part in [
        "the embedded PostgreSQL in",
        "died",
        &format!("postmaster pid {pid}"),
        "could not be restarted",
        "5 attempts",
        "postgres.log",
    ] {
        assert!(error.contains(part), "{part:?} missing from: {error}");
    }
    assert!(
        output.contains("restarting the embedded PostgreSQL failed"),
        "{output}"
    );
    assert!(
        postmaster_pid(&pg_data).is_none_or(|pid| !alive(pid)),
        "a postmaster runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_the_embedded_postgres_cannot_be_stopped_exits_non_zero() {
    let config = format!("{CONFIG}embedded_database_timeout = \"2s\"\n");
    let mut server = Server::start(&[], &config).await;
    let pg_data = server.pg_data();
    let pid = postmaster_pid(&pg_data).unwrap();
    // A stopped postmaster is alive but takes no signal, so it cannot be shut down. (Its
    // backends still answer the server's open sessions.)
    kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    server.signal(Signal::SIGTERM);
    let code = server.wait_exit(STEP_TIMEOUT).await;
    let output = server.output();
    kill(Pid::from_raw(pid), Signal::SIGCONT).unwrap();
    assert_ne!(code, 0, "{output}");
    let error = output
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{output}"));
    assert!(
        error.contains("stopping the embedded PostgreSQL failed"),
        "{error}"
    );
    assert!(error.contains("postgres.log"), "{error}");
    // Woken again, the postmaster takes the stop it was sent and goes.
    eventually("the postmaster to stop", STEP_TIMEOUT, || async {
        (!alive(pid)).then_some(())
    })
    .await;
}
