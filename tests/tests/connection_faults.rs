//! Connections between workers and servers breaking at every point of the protocol.
//!
//! A real server, real `berth-worker` processes and real Docker, with a [`Proxy`] between
//! the workers and the server: the workers know only the proxy's address, and the proxy
//! cuts, stalls or slows their connections at the moment each test picks from what the
//! database shows (an attempt assigned, accepted, logging, finished on the host). The
//! workers reconnect by themselves. Every test ends with the invariants of
//! [`berth_tests::invariants`]: every request terminal exactly once, attempts of a request
//! never overlapping (as the server recorded them and as Docker saw them), no worker above
//! its concurrency, every log complete byte for byte, no container left.
//!
//! The first tests check the proxy itself against plain TCP servers. The last ones kill
//! processes under the workers instead: two replica processes serving five workers, one
//! of them killed with SIGKILL; a worker killed mid-job; the embedded postmaster killed
//! under load.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use berth_common::proto::{ContainerSpec, WorkResult};
use berth_tests::invariants::{self, Check, DockerEvents};
use berth_tests::{
    ContainerSweep, Proxy, ServerProcess, TestServer, TestWorker, WAIT, docker, ensure_test_image,
    eventually, fresh_database, query, quick_leases, result, sh, submit, wait_no_containers,
    wait_terminal,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// ----- the proxy itself -----

/// A TCP server that greets every connection with `tag` and a newline, then echoes.
async fn echo_server(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if socket
                    .write_all(format!("{tag}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Connects through the proxy and reads the upstream's greeting.
async fn connect(proxy: &Proxy) -> (TcpStream, String) {
    let mut socket = TcpStream::connect(proxy.addr).await.unwrap();
    let mut greeting = Vec::new();
    let mut byte = [0u8; 1];
    while greeting.last() != Some(&b'\n') {
        let n = tokio::time::timeout(WAIT, socket.read(&mut byte))
            .await
            .expect("the greeting within the wait")
            .unwrap();
        assert_eq!(
            n, 1,
            "the connection closed before the greeting: {greeting:?}"
        );
        greeting.push(byte[0]);
    }
    (
        socket,
        String::from_utf8(greeting).unwrap().trim().to_owned(),
    )
}

/// Writes `data` and reads exactly as many bytes back.
async fn echo(socket: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    socket.write_all(data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(WAIT, socket.read_exact(&mut back))
        .await
        .expect("the echo within the wait")
        .unwrap();
    back
}

/// Whether the peer closed `socket` (a read returns end of file or an error).
async fn closed(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(WAIT, socket.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn proxy_forwards_both_ways_and_cut_closes_open_connections_only() {
    let upstream = echo_server("a").await;
    let proxy = Proxy::start(upstream).await.unwrap();
    let (mut first, greeting) = connect(&proxy).await;
    assert_eq!(greeting, "a");
    assert_eq!(echo(&mut first, b"hello").await, b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo(&mut first, &big).await, big);

    proxy.cut();
    assert!(closed(&mut first).await, "a cut connection must be closed");
    eventually("the cut connection to be forgotten", WAIT, || async {
        (proxy.open_connections() == 0).then_some(())
    })
    .await;
    // New connections work as before.
    let (mut second, _) = connect(&proxy).await;
    assert_eq!(echo(&mut second, b"again").await, b"again");
    assert_eq!(proxy.open_connections(), 1);
}

#[tokio::test]
async fn proxy_stall_holds_bytes_with_the_socket_open_until_resume() {
    let proxy = Proxy::start(echo_server("a").await).await.unwrap();
    let (mut socket, _) = connect(&proxy).await;
    proxy.stall();
    socket.write_all(b"held").await.unwrap();
    // Shows that nothing comes back while stalled: half a second is ample for an echo
    // on loopback, and the connection must stay open meanwhile.
    let mut buf = [0u8; 4];
    let early = tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await;
    assert!(early.is_err(), "a stalled proxy passed bytes on: {early:?}");
    assert_eq!(proxy.open_connections(), 1);
    proxy.resume();
    tokio::time::timeout(WAIT, socket.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"held");
}

#[tokio::test]
async fn proxy_slow_passes_everything_on_in_small_chunks() {
    let proxy = Proxy::start(echo_server("a").await).await.unwrap();
    let (mut socket, _) = connect(&proxy).await;
    let before = proxy.forwarded_bytes();
    proxy.slow(Duration::from_millis(5), 100);
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 256) as u8).collect();
    assert_eq!(echo(&mut socket, &data).await, data);
    assert_eq!(proxy.forwarded_bytes() - before, 6000);
    proxy.resume();
    assert_eq!(echo(&mut socket, b"fast").await, b"fast");
}

#[tokio::test]
async fn proxy_refuse_closes_new_connections_and_keeps_open_ones() {
    let proxy = Proxy::start(echo_server("a").await).await.unwrap();
    let (mut open, _) = connect(&proxy).await;
    proxy.refuse();
    let mut refused = TcpStream::connect(proxy.addr).await.unwrap();
    assert!(
        closed(&mut refused).await,
        "a refused connection must be closed"
    );
    assert_eq!(proxy.refused(), 1);
    assert_eq!(echo(&mut open, b"still").await, b"still");
    proxy.resume();
    let (_, greeting) = connect(&proxy).await;
    assert_eq!(greeting, "a");
}

#[tokio::test]
async fn proxy_takes_turns_among_upstreams_and_skips_one_that_is_down() {
    let a = echo_server("a").await;
    let b = echo_server("b").await;
    let proxy = Proxy::start_many(vec![a, b]).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(connect(&proxy).await.1);
    }
    assert_eq!(seen, ["a", "b", "a", "b"]);

    // An address nothing listens on: connections go to the next upstream instead.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    proxy.set_upstreams(vec![dead, b]);
    for _ in 0..3 {
        assert_eq!(connect(&proxy).await.1, "b");
    }
    // Switching moves new connections; an open one stays where it is until cut.
    let (mut on_b, _) = connect(&proxy).await;
    proxy.set_upstreams(vec![a]);
    assert_eq!(connect(&proxy).await.1, "a");
    assert_eq!(echo(&mut on_b, b"b?").await, b"b?");
    proxy.cut();
    assert!(closed(&mut on_b).await);
    assert_eq!(proxy.upstreams(), vec![a]);
}

// ----- one worker behind a proxy -----

/// A server with short leases, a proxy in front of it, one real worker that knows only
/// the proxy, the audit installed and Docker's events recorded.
struct Rig {
    server: TestServer,
    proxy: Proxy,
    worker: TestWorker,
    docker: DockerEvents,
    expected: HashMap<String, Vec<u8>>,
    /// Last, so that it drops after the worker.
    _sweep: ContainerSweep,
}

impl Rig {
    async fn start() -> Rig {
        ensure_test_image().await;
        let server = TestServer::start_with(quick_leases).await;
        invariants::install_audit(&server.database_url)
            .await
            .unwrap();
        let docker = DockerEvents::start().await.unwrap();
        let proxy = Proxy::start(server.addr).await.unwrap();
        let worker = TestWorker::start_via(&server, &proxy.url, &["--concurrency", "2"]).await;
        worker.wait_connected(&server).await;
        let sweep = ContainerSweep(vec![worker.name.clone()]);
        Rig {
            server,
            proxy,
            worker,
            docker,
            expected: HashMap::new(),
            _sweep: sweep,
        }
    }

    /// Submits `script` and remembers that its stdout must be exactly `stdout`.
    async fn submit(&mut self, script: &str, stdout: &[u8]) -> String {
        let request = submit(&self.server, sh(script)).await;
        self.expected.insert(request.id.clone(), stdout.to_vec());
        request.id
    }

    /// Waits until the request ended with success, then checks every invariant and stops.
    async fn finish(mut self, ids: &[String]) {
        for id in ids {
            let done = wait_terminal(&self.server, id).await;
            assert_eq!(
                result(&done),
                WorkResult::Success,
                "{done:#?}\nworker log:\n{}",
                self.worker.log()
            );
        }
        wait_no_containers(&self.worker.name).await;
        let violations = Check {
            database_url: self.server.database_url.clone(),
            workers: vec![self.worker.name.clone()],
            docker: Some(&self.docker),
            expected_stdout: std::mem::take(&mut self.expected),
            container_grace: None,
        }
        .run()
        .await
        .unwrap();
        invariants::assert_none(&violations);
        self.worker.terminate(Duration::from_secs(30)).await;
        drop(self.proxy);
        self.server.stop().await;
    }

    /// The state of attempt `n` of request `id` (`None` before it exists) and the bytes
    /// of stdout stored for it.
    async fn attempt(&self, id: &str, n: i32) -> Option<(String, i64)> {
        let rows = query(
            &self.server.database_url,
            &format!(
                "SELECT a.state, (SELECT coalesce(sum(length(data)), 0)::bigint FROM log_chunks l \
                   WHERE l.work_request_id = a.work_request_id AND l.attempt = a.number AND l.stream = 1) \
                 FROM attempts a WHERE a.work_request_id = '{id}' AND a.number = {n}"
            ),
        )
        .await;
        rows.first().map(|r| (r.get(0), r.get(1)))
    }

    /// Waits until attempt `n` of `id` satisfies `check`, polling every 10 ms.
    async fn wait_attempt(
        &self,
        id: &str,
        n: i32,
        what: &str,
        check: impl Fn(&str, i64) -> bool,
    ) -> (String, i64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some((state, bytes)) = self.attempt(id, n).await
                && check(&state, bytes)
            {
                return (state, bytes);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for attempt {n} of {id} {what}; worker log:\n{}",
                self.worker.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn cut_while_the_assign_is_on_its_way_runs_the_job_once() {
    let mut rig = Rig::start().await;
    rig.proxy.stall();
    let id = rig.submit("echo assigned", b"assigned\n").await;
    // The claim committed and the Assign went into the stalled connection.
    rig.wait_attempt(&id, 1, "to be assigned", |_, _| true)
        .await;
    rig.proxy.cut();
    rig.proxy.resume();
    rig.finish(&[id]).await;
}

#[tokio::test]
async fn cut_between_accept_and_started_runs_the_job_once() {
    let mut rig = Rig::start().await;
    // Every chunk waits 400 ms, so the Accept and the Started (written a container start
    // apart) reach the server at least that far apart: room to stall in between.
    rig.proxy.slow(Duration::from_millis(400), 64 * 1024);
    let id = rig
        .submit("echo accepted; sleep 3; echo ran", b"accepted\nran\n")
        .await;
    rig.wait_attempt(&id, 1, "to be accepted", |state, _| state == "accepted")
        .await;
    rig.proxy.stall();
    let (state, _) = rig.attempt(&id, 1).await.unwrap();
    assert_eq!(
        state, "accepted",
        "the Started report got through before the stall; the test missed its point"
    );
    rig.proxy.cut();
    rig.proxy.resume();
    rig.finish(&[id]).await;
}

/// `lines` numbered lines, 60 bytes each, with a pause every 50 lines: a chatty job
/// whose output takes a few seconds to come out, and the bytes it prints.
fn chatty(lines: u32) -> (String, Vec<u8>) {
    let script = format!(
        "i=1; while [ $i -le {lines} ]; do printf 'line %05d of a chatty job, abcdefghijklmnopqrstuvwxyz..\\n' $i; \
         if [ $((i % 50)) -eq 0 ]; then sleep 0.2; fi; i=$((i + 1)); done"
    );
    let mut expected = Vec::new();
    for i in 1..=lines {
        expected.extend_from_slice(
            format!("line {i:05} of a chatty job, abcdefghijklmnopqrstuvwxyz..\n").as_bytes(),
        );
    }
    (script, expected)
}

#[tokio::test]
async fn cuts_and_a_stall_during_log_upload_lose_and_repeat_no_byte() {
    let mut rig = Rig::start().await;
    let (script, expected) = chatty(1000);
    let total = i64::try_from(expected.len()).unwrap();
    let id = rig.submit(&script, &expected).await;
    // Three breaks at growing offsets while the job is still printing.
    let mut last = 0;
    for fault in 0..3 {
        let (state, bytes) = rig
            .wait_attempt(&id, 1, "to have logged more", |state, bytes| {
                state == "finished" || (bytes > last && bytes < total)
            })
            .await;
        if state == "finished" || bytes >= total {
            break;
        }
        last = bytes;
        if fault == 2 {
            rig.proxy.stall();
            rig.wait_attempt(&id, 1, "to be running", |state, _| state != "assigned")
                .await;
        }
        rig.proxy.cut();
        rig.proxy.resume();
    }
    assert!(last > 0, "no break happened while the job logged");
    rig.finish(&[id]).await;
}

#[tokio::test]
async fn cut_right_before_finished_records_the_result_once() {
    let mut rig = Rig::start().await;
    let id = rig
        .submit("echo last words; sleep 2", b"last words\n")
        .await;
    rig.wait_attempt(&id, 1, "to have logged its words", |_, bytes| bytes == 11)
        .await;
    rig.proxy.stall();
    // The worker removes the container just after it sent Finished: once it is gone, the
    // Finished is in the stalled connection and the server has not seen it.
    eventually("the job's container to be removed", WAIT, || async {
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=berth.work-request={id}"),
        ])
        .await
        .trim()
        .is_empty()
        .then_some(())
    })
    .await;
    let (state, _) = rig.attempt(&id, 1).await.unwrap();
    assert_ne!(
        state, "finished",
        "the Finished report got through the stall"
    );
    rig.proxy.cut();
    rig.proxy.resume();
    rig.finish(&[id]).await;
}

#[tokio::test]
async fn worker_cut_off_past_its_lease_stops_its_container_before_the_retry_runs() {
    let mut rig = Rig::start().await;
    let id = rig
        .submit("echo begin; sleep 10; echo end", b"begin\nend\n")
        .await;
    rig.wait_attempt(&id, 1, "to run", |state, bytes| {
        state == "running" && bytes > 0
    })
    .await;
    // A second worker, straight to the server, to take the request when the lease of
    // the first runs out.
    let other = TestWorker::start(&rig.server, &[]).await;
    rig._sweep.add(&other.name);
    other.wait_connected(&rig.server).await;
    // The partition outlasts the lease (3 s): the server gives the attempt up and the
    // request runs again on the other worker, while the first still runs its container.
    rig.proxy.stall();
    let moved = berth_tests::wait_for(&rig.server, &id, "to run on the other worker", WAIT, |r| {
        r.attempt_count == 2 && berth_tests::is_started(r)
    })
    .await;
    assert_eq!(berth_tests::worker_of(&moved), other.name, "{moved:#?}");
    rig.proxy.cut();
    rig.proxy.resume();
    let done = wait_terminal(&rig.server, &id).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:#?}");
    let violations = Check {
        database_url: rig.server.database_url.clone(),
        workers: vec![rig.worker.name.clone(), other.name.clone()],
        docker: Some(&rig.docker),
        expected_stdout: std::mem::take(&mut rig.expected),
        container_grace: None,
    }
    .run()
    .await
    .unwrap();
    invariants::assert_none(&violations);
}

#[tokio::test]
async fn a_worker_cut_off_past_its_lease_stops_its_own_container_with_no_other_worker_around() {
    let mut rig = Rig::start().await;
    let id = rig
        .submit("echo begin; sleep 30; echo end", b"begin\nend\n")
        .await;
    rig.wait_attempt(&id, 1, "to run", |state, bytes| {
        state == "running" && bytes > 0
    })
    .await;
    // No other worker shares the engine's view here: only the worker itself can stop
    // its container once its lease (3 s) has run out and the server gave the attempt up.
    rig.proxy.stall();
    let name = rig.worker.name.clone();
    eventually(
        "the cut-off worker to stop its own container (none of its containers running)",
        // Well before the job's own 30 s are up: lease 3 s, then its stop grace.
        Duration::from_secs(15),
        || {
            let name = name.clone();
            async move {
                // Stopped, not yet removed: the worker removes it once its log is
                // uploaded, which waits for the server.
                berth_tests::docker(&[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=berth.worker={name}"),
                ])
                .await
                .trim()
                .is_empty()
                .then_some(())
            }
        },
    )
    .await;
    assert!(
        rig.worker
            .log()
            .contains("no word from the server for the lease TTL"),
        "{}",
        rig.worker.log()
    );
    // Back in touch, the request runs again (on the same worker) and completes.
    rig.proxy.cut();
    rig.proxy.resume();
    let done = wait_terminal(&rig.server, &id).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:#?}");
    assert_eq!(done.attempt_count, 2, "{done:#?}");
    let violations = Check {
        database_url: rig.server.database_url.clone(),
        workers: vec![rig.worker.name.clone()],
        docker: Some(&rig.docker),
        expected_stdout: std::mem::take(&mut rig.expected),
        container_grace: None,
    }
    .run()
    .await
    .unwrap();
    invariants::assert_none(&violations);
}

// ----- replicas -----

/// The load of the replica test: job `n` prints two lines around a short sleep.
fn replica_job(n: usize) -> (ContainerSpec, Vec<u8>) {
    let sleep = ["0.5", "1", "2"][n % 3];
    (
        sh(&format!("echo job-{n}; sleep {sleep}; echo done-{n}")),
        format!("job-{n}\ndone-{n}\n").into_bytes(),
    )
}

#[tokio::test]
async fn replica_killed_under_load_leaves_its_workers_to_the_survivor() {
    ensure_test_image().await;
    let database_url = fresh_database().await;
    let config = "heartbeat_interval = \"1s\"\nlease_ttl = \"3s\"\nhandoff_deadline = \"2s\"\n";
    let mut doomed = ServerProcess::start(&database_url, None, config).await;
    let admin = doomed.admin_token();
    let survivor = doomed.replica().await;
    let api = survivor.handle(&admin);
    invariants::install_audit(&database_url).await.unwrap();
    let docker_events = DockerEvents::start().await.unwrap();
    let proxy = Proxy::start_many(vec![doomed.addr, survivor.addr])
        .await
        .unwrap();
    let mut sweep = ContainerSweep::default();
    let mut workers = Vec::new();
    for _ in 0..5 {
        let worker = TestWorker::start_via(&api, &proxy.url, &["--concurrency", "2"]).await;
        sweep.add(&worker.name);
        workers.push(worker);
    }
    for worker in &workers {
        worker.wait_connected(&api).await;
    }
    let connected = query(
        &database_url,
        "SELECT count(*) FROM workers WHERE connected_at IS NOT NULL",
    )
    .await;
    assert_eq!(connected[0].get::<_, i64>(0), 5);

    let mut expected = HashMap::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let (spec, stdout) = replica_job(n);
        let request = submit(&api, spec).await;
        expected.insert(request.id.clone(), stdout);
        ids.push(request.id);
    }
    // Kill the replica while it holds streams with attempts running on them.
    eventually("attempts to run", WAIT, || async {
        let rows = query(
            &database_url,
            "SELECT count(*) FROM attempts WHERE state = 'running'",
        )
        .await;
        (rows[0].get::<_, i64>(0) >= 4).then_some(())
    })
    .await;
    doomed.kill().await;
    for n in 20..30 {
        let (spec, stdout) = replica_job(n);
        let request = submit(&api, spec).await;
        expected.insert(request.id.clone(), stdout);
        ids.push(request.id);
    }
    for id in &ids {
        let done = wait_terminal(&api, id).await;
        assert_eq!(
            result(&done),
            WorkResult::Success,
            "{done:#?}\nsurvivor log:\n{}",
            survivor.log()
        );
    }
    // Every worker landed on the survivor: the proxy has no other upstream that answers.
    for worker in &workers {
        worker.wait_connected(&api).await;
    }
    for worker in &workers {
        wait_no_containers(&worker.name).await;
    }
    let violations = Check {
        database_url: database_url.clone(),
        workers: workers.iter().map(|w| w.name.clone()).collect(),
        docker: Some(&docker_events),
        expected_stdout: expected,
        container_grace: None,
    }
    .run()
    .await
    .unwrap();
    invariants::assert_none(&violations);
    for worker in &mut workers {
        worker.terminate(Duration::from_secs(30)).await;
    }
}

// ----- processes dying under the workers -----

/// Submits `echo begin-N; sleep S; echo end-N` and remembers its stdout.
async fn sleeper(
    server: &TestServer,
    n: usize,
    seconds: u32,
    expected: &mut HashMap<String, Vec<u8>>,
) -> String {
    let request = submit(
        server,
        sh(&format!("echo begin-{n}; sleep {seconds}; echo end-{n}")),
    )
    .await;
    expected.insert(
        request.id.clone(),
        format!("begin-{n}\nend-{n}\n").into_bytes(),
    );
    request.id
}

#[tokio::test]
async fn worker_killed_mid_job_leaves_no_container_running_beside_the_retry() {
    ensure_test_image().await;
    let server = TestServer::start_with(quick_leases).await;
    invariants::install_audit(&server.database_url)
        .await
        .unwrap();
    let docker_events = DockerEvents::start().await.unwrap();
    let mut sweep = ContainerSweep::default();
    let mut doomed = TestWorker::start(&server, &[]).await;
    sweep.add(&doomed.name);
    doomed.wait_connected(&server).await;
    let mut expected = HashMap::new();
    let id = sleeper(&server, 1, 8, &mut expected).await;
    berth_tests::wait_started(&server, &id).await;
    // The second worker comes only now, so the job started on the first.
    let survivor = TestWorker::start(&server, &[]).await;
    sweep.add(&survivor.name);
    survivor.wait_connected(&server).await;
    doomed.kill().await;
    // The lease runs out, the request runs again on the survivor (same Docker engine).
    let done = wait_terminal(&server, &id).await;
    assert_eq!(result(&done), WorkResult::Success, "{done:#?}");
    assert_eq!(berth_tests::worker_of(&done), survivor.name, "{done:#?}");
    let violations = Check {
        database_url: server.database_url.clone(),
        workers: vec![doomed.name.clone(), survivor.name.clone()],
        docker: Some(&docker_events),
        expected_stdout: expected,
        container_grace: None,
    }
    .run()
    .await
    .unwrap();
    invariants::assert_none(&violations);
}

#[tokio::test]
async fn embedded_postmaster_killed_under_load_comes_back_and_every_job_ends_once() {
    ensure_test_image().await;
    let config = "heartbeat_interval = \"1s\"\nlease_ttl = \"3s\"\nhandoff_deadline = \"2s\"\n";
    let mut server = ServerProcess::embedded(config).await;
    let api = server.handle(&server.admin_token());
    invariants::install_audit(&server.database_url)
        .await
        .unwrap();
    let docker_events = DockerEvents::start().await.unwrap();
    let mut sweep = ContainerSweep::default();
    let worker = TestWorker::start(&api, &["--concurrency", "2"]).await;
    sweep.add(&worker.name);
    worker.wait_connected(&api).await;
    let mut expected = HashMap::new();
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(sleeper(&api, n, 2, &mut expected).await);
    }
    berth_tests::wait_started(&api, &ids[0]).await;
    let pid = server
        .postmaster_pid()
        .expect("the embedded postmaster's pid");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    // The server must notice, bring its PostgreSQL back and go on.
    eventually(
        "a new embedded postmaster",
        Duration::from_secs(60),
        || async {
            server
                .postmaster_pid()
                .filter(|new| *new != pid)
                .map(|_| ())
        },
    )
    .await;
    // Calls are refused (UNAVAILABLE) until the server's pool reaches the new postmaster;
    // health says when that is.
    eventually(
        "health SERVING again after the postmaster's restart",
        Duration::from_secs(60),
        || async {
            (berth_tests::health(&api.url, None).await
                == Some(tonic_health::pb::health_check_response::ServingStatus::Serving))
            .then_some(())
        },
    )
    .await;
    for n in 4..6 {
        ids.push(sleeper(&api, n, 1, &mut expected).await);
    }
    for id in &ids {
        let done = wait_terminal(&api, id).await;
        assert_eq!(
            result(&done),
            WorkResult::Success,
            "{done:#?}\nserver log:\n{}",
            server.log()
        );
    }
    let violations = Check {
        database_url: server.database_url.clone(),
        workers: vec![worker.name.clone()],
        docker: Some(&docker_events),
        expected_stdout: expected,
        container_grace: None,
    }
    .run()
    .await
    .unwrap();
    invariants::assert_none(&violations);
    server.stop().await;
}
