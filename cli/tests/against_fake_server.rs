//! Drives `berth` through its public entry point against an in-process fake server, to
//! check what goes over the wire (the bearer token, the request fields) and what comes out
//! (stdout, stderr, exit status). The real server is tested in the `tests` crate; the fake
//! only answers with canned messages and records what it was sent. Its StreamLogs plays a
//! scripted log ([`LogScript`]), breaking the stream where told, so following, resuming
//! and exit statuses can be checked without a worker.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_common::proto;
use berth_common::proto::token_service_server::{TokenService, TokenServiceServer};
use berth_common::proto::work_request_service_server::{
    WorkRequestService, WorkRequestServiceServer,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What the fake saw: the last request of each kind and the authorization header.
#[derive(Default)]
struct Seen {
    authorization: Option<String>,
    submitted: Option<proto::SubmitWorkRequestRequest>,
    listed: Option<proto::ListWorkRequestsRequest>,
    created_token: Option<proto::CreateTokenRequest>,
    streamed: Vec<proto::StreamLogsRequest>,
    cancelled: bool,
}

/// What StreamLogs and GetWorkRequest answer for `wr-1`.
#[derive(Default)]
struct LogScript {
    /// The whole log, in production order.
    chunks: Vec<proto::LogChunk>,
    /// For the first calls, one entry each: how the stream stops early. Later calls send
    /// everything and end.
    breaks: VecDeque<Break>,
    /// Hold chunk `.0` (of the whole log) back until the CLI's stdout shows `.1`.
    hold: Option<(usize, String, SharedBuf)>,
    /// What GetWorkRequest answers, one per call; the last one stays.
    states: VecDeque<proto::WorkRequest>,
}

/// How a scripted stream stops early.
#[derive(Clone, Copy)]
enum Break {
    /// After this many chunks, with UNAVAILABLE, as when the server goes away.
    Fail(usize),
    /// After this many chunks, cleanly, although the request goes on.
    End(usize),
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
    script: Arc<Mutex<LogScript>>,
}

impl Fake {
    fn record<T>(&self, request: &Request<T>, store: impl FnOnce(&mut Seen)) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.authorization = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        store(&mut seen);
    }

    fn seen<R>(&self, read: impl FnOnce(&Seen) -> R) -> R {
        read(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn script<R>(&self, change: impl FnOnce(&mut LogScript) -> R) -> R {
        change(&mut self.script.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A writer whose bytes the test (and the fake) can read while `berth` still writes.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Waits (up to 10 s) until the text contains `wanted`.
    async fn shows(&self, wanted: &str) -> bool {
        for _ in 0..1000 {
            if self.text().contains(wanted) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

impl Write for SharedBuf {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn chunk(attempt: u32, stream: u32, offset: u64, data: &str) -> proto::LogChunk {
    proto::LogChunk {
        attempt,
        stream,
        offset,
        data: data.as_bytes().to_vec(),
    }
}

const STDOUT: u32 = 1;
const STDERR: u32 = 2;
const SYSTEM: u32 = 3;

/// `wr-1` as it ended.
fn ended(
    status: proto::WorkRequestStatus,
    result: proto::WorkResult,
    exit_code: Option<i32>,
    reason: &str,
    message: &str,
) -> proto::WorkRequest {
    proto::WorkRequest {
        status: status as i32,
        result: result as i32,
        exit_code,
        reason: reason.into(),
        message: message.into(),
        ..pending_request("wr-1")
    }
}

/// Applies a StreamLogs request to the whole log the way the server does: only the asked
/// attempt (0: all), and the offsets skip bytes of stdout and stderr of every attempt.
fn select(
    log: &[proto::LogChunk],
    request: &proto::StreamLogsRequest,
) -> Vec<(usize, proto::LogChunk)> {
    let mut selected = Vec::new();
    for (index, chunk) in log.iter().enumerate() {
        if request.attempt != 0 && chunk.attempt != request.attempt {
            continue;
        }
        let skip = match chunk.stream {
            STDOUT => request.stdout_offset,
            STDERR => request.stderr_offset,
            _ => 0,
        };
        let end = chunk.offset + chunk.data.len() as u64;
        if end <= skip {
            continue;
        }
        let mut chunk = chunk.clone();
        if chunk.offset < skip {
            chunk
                .data
                .drain(..usize::try_from(skip - chunk.offset).unwrap_or(0));
            chunk.offset = skip;
        }
        selected.push((index, chunk));
    }
    selected
}

fn pending_request(id: &str) -> proto::WorkRequest {
    proto::WorkRequest {
        id: id.into(),
        workspace: "default".into(),
        status: proto::WorkRequestStatus::Pending as i32,
        spec: Some(proto::ContainerSpec {
            image: "busybox".into(),
            pull_policy: proto::PullPolicy::IfNotPresent as i32,
            ..Default::default()
        }),
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl WorkRequestService for Fake {
    async fn adjust_priority(
        &self,
        _request: Request<proto::AdjustPriorityRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn list_queue(
        &self,
        _request: Request<proto::ListQueueRequest>,
    ) -> Result<Response<proto::ListQueueResponse>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn unblock_work_request(
        &self,
        _request: Request<proto::UnblockWorkRequestRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn retry_work_request(
        &self,
        _request: Request<proto::RetryWorkRequestRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn submit_workflow(
        &self,
        _request: Request<proto::SubmitWorkflowRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        Err(Status::unimplemented("not faked"))
    }

    async fn submit_work_request(
        &self,
        request: Request<proto::SubmitWorkRequestRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        self.record(&request, |seen| {
            seen.submitted = Some(request.get_ref().clone());
        });
        Ok(Response::new(pending_request("wr-1")))
    }

    async fn get_work_request(
        &self,
        request: Request<proto::GetWorkRequestRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        self.record(&request, |_| {});
        if request.get_ref().id != "wr-1" {
            return Err(Status::not_found("work request nope not found"));
        }
        let scripted = self.script(|script| {
            if script.states.len() > 1 {
                script.states.pop_front()
            } else {
                script.states.front().cloned()
            }
        });
        Ok(Response::new(
            scripted.unwrap_or_else(|| pending_request("wr-1")),
        ))
    }

    async fn list_work_requests(
        &self,
        request: Request<proto::ListWorkRequestsRequest>,
    ) -> Result<Response<proto::ListWorkRequestsResponse>, Status> {
        self.record(&request, |seen| {
            seen.listed = Some(request.get_ref().clone())
        });
        Ok(Response::new(proto::ListWorkRequestsResponse {
            work_requests: vec![pending_request("wr-2"), pending_request("wr-1")],
            next_page_token: "page-2".into(),
        }))
    }

    async fn cancel_work_request(
        &self,
        request: Request<proto::CancelWorkRequestRequest>,
    ) -> Result<Response<proto::WorkRequest>, Status> {
        self.record(&request, |seen| seen.cancelled = true);
        Err(Status::failed_precondition(
            "work request wr-1 is already completed",
        ))
    }

    type StreamLogsStream = ReceiverStream<Result<proto::LogChunk, Status>>;

    async fn stream_logs(
        &self,
        request: Request<proto::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let asked = request.get_ref().clone();
        self.record(&request, |seen| seen.streamed.push(asked.clone()));
        if asked.id != "wr-1" {
            return Err(Status::not_found("work request nope not found"));
        }
        let (chunks, breaks, hold) = self.script(|script| {
            let breaks = script.breaks.pop_front();
            (select(&script.chunks, &asked), breaks, script.hold.clone())
        });
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let (limit, fail) = match breaks {
                Some(Break::Fail(n)) => (n, true),
                Some(Break::End(n)) => (n, false),
                None => (usize::MAX, false),
            };
            for (index, chunk) in chunks.into_iter().take(limit) {
                if let Some((held, wanted, out)) = &hold
                    && *held == index
                    && !out.shows(wanted).await
                {
                    let _ = tx
                        .send(Err(Status::internal("the CLI never showed the first line")))
                        .await;
                    return;
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            if fail {
                let _ = tx.send(Err(Status::unavailable("server restarting"))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[tonic::async_trait]
impl TokenService for Fake {
    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        self.record(&request, |seen| {
            seen.created_token = Some(request.get_ref().clone());
        });
        Ok(Response::new(proto::CreateTokenResponse {
            info: Some(proto::TokenInfo {
                id: "tok-1".into(),
                role: request.get_ref().role,
                owner: request.get_ref().name.clone(),
                enabled: true,
                prefix: "berth_wkr_".into(),
                ..Default::default()
            }),
            token: "berth_wkr_SECRET".into(),
        }))
    }

    async fn list_tokens(
        &self,
        _: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn enable_token(
        &self,
        _: Request<proto::EnableTokenRequest>,
    ) -> Result<Response<proto::TokenInfo>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn disable_token(
        &self,
        _: Request<proto::DisableTokenRequest>,
    ) -> Result<Response<proto::TokenInfo>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn delete_token(
        &self,
        _: Request<proto::DeleteTokenRequest>,
    ) -> Result<Response<proto::DeleteTokenResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// A running fake server; it stops when dropped.
struct Running {
    url: String,
    fake: Fake,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Running {
    let fake = Fake::default();
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let url = format!("http://{}", incoming.local_addr().expect("local address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .add_service(WorkRequestServiceServer::new(fake.clone()))
        .add_service(TokenServiceServer::new(fake.clone()));
    tokio::spawn(async move {
        let _ = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        url,
        fake,
        _stop: stop,
    }
}

/// Runs `berth --server <fake> --token berth_usr_test <line>`: (status, stdout, stderr).
async fn berth(server: &Running, line: &[&str]) -> (u8, String, String) {
    let mut args = vec![
        "berth",
        "--server",
        &server.url,
        "--token",
        "berth_usr_test",
    ];
    args.extend_from_slice(line);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = berth_cli::run_with(args, &mut out, &mut err).await;
    (
        status,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn run_submits_the_spec_with_the_token_and_prints_the_id() {
    let server = start().await;
    let (status, out, err) = berth(
        &server,
        &[
            "run", "busybox", "--env", "A=1", "--memory", "256M", "--detach", "--", "sh", "-c",
            "echo hi",
        ],
    )
    .await;
    assert_eq!((status, out.as_str(), err.as_str()), (0, "wr-1\n", ""));
    let (authorization, submitted) = server
        .fake
        .seen(|seen| (seen.authorization.clone(), seen.submitted.clone()));
    assert_eq!(authorization.as_deref(), Some("Bearer berth_usr_test"));
    let spec = submitted
        .and_then(|s| s.spec)
        .expect("a spec was submitted");
    assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
    assert_eq!(spec.memory_bytes, Some(256 << 20));
    assert_eq!(spec.env.get("A").map(String::as_str), Some("1"));
}

/// Runs `berth` like [`berth`], writing stdout to `out` (which the test and the fake can
/// watch meanwhile); `interrupt` stands in for Ctrl-C.
async fn berth_live(
    server: &Running,
    line: &[&str],
    out: &SharedBuf,
    interrupt: impl std::future::Future<Output = ()> + Send,
) -> (u8, String, String) {
    let mut args = vec![
        "berth",
        "--server",
        &server.url,
        "--token",
        "berth_usr_test",
    ];
    args.extend_from_slice(line);
    let mut writer = out.clone();
    let mut err = Vec::new();
    let status = berth_cli::run_with_interrupt(args, &mut writer, &mut err, interrupt).await;
    (
        status,
        out.text(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[tokio::test]
async fn run_follows_the_log_live_and_exits_with_the_container_exit_code() {
    use proto::{WorkRequestStatus::Completed, WorkResult::Failure};
    let server = start().await;
    let out = SharedBuf::default();
    server.fake.script(|script| {
        script.chunks = vec![
            chunk(1, SYSTEM, 0, "[berth] pulling busybox\n"),
            chunk(1, STDOUT, 0, "hello\n"),
            chunk(1, STDERR, 0, "oops\n"),
            chunk(1, STDOUT, 6, "bye\n"),
        ];
        // The rest of the log waits until the first line is on the CLI's stdout: it must
        // be written as it arrives, not when the job ends.
        script.hold = Some((2, "hello\n".into(), out.clone()));
        script.states = [ended(Completed, Failure, Some(3), "", "")].into();
    });
    let (status, out, err) = berth_live(
        &server,
        &["run", "busybox", "--", "sh", "-c", "echo hello; exit 3"],
        &out,
        std::future::pending(),
    )
    .await;
    assert_eq!(status, 3, "{err}");
    assert_eq!(out, "hello\nbye\n");
    assert_eq!(err, "[berth] pulling busybox\noops\n");
    let streamed = server.fake.seen(|seen| seen.streamed.clone());
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0].id, "wr-1");
    assert_eq!((streamed[0].attempt, streamed[0].follow), (0, true));
}

#[tokio::test]
async fn run_with_json_output_still_prints_only_the_containers_output() {
    use proto::{WorkRequestStatus::Completed, WorkResult::Success};
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![chunk(1, STDOUT, 0, "{\"from\": \"the container\"}\n")];
        script.states = [ended(Completed, Success, Some(0), "", "")].into();
    });
    let (status, out, err) = berth(&server, &["-o", "json", "run", "busybox"]).await;
    assert_eq!((status, err.as_str()), (0, ""));
    assert_eq!(out, "{\"from\": \"the container\"}\n");
}

#[tokio::test]
async fn run_resumes_a_broken_stream_without_repeating_output() {
    use proto::{WorkRequestStatus::Completed, WorkRequestStatus::Running, WorkResult::Success};
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![
            chunk(1, STDOUT, 0, "one\n"),
            chunk(1, STDERR, 0, "e1\n"),
            chunk(1, STDOUT, 4, "two\n"),
            chunk(1, SYSTEM, 0, "[berth] worker lost; retrying\n"),
            // The second attempt's offsets start at 0 again.
            chunk(2, STDOUT, 0, "one\n"),
            chunk(2, STDOUT, 4, "two\n"),
            chunk(2, STDOUT, 8, "three\n"),
        ];
        // Broken after "one", then after attempt 2's "one"; then a stream that ends
        // cleanly while the request still runs; then the rest.
        script.breaks = [Break::Fail(1), Break::Fail(5), Break::End(6)].into();
        script.states = [
            ended(Running, proto::WorkResult::Unspecified, None, "", ""),
            ended(Completed, Success, Some(0), "", ""),
        ]
        .into();
    });
    let (status, out, err) = berth(&server, &["run", "busybox"]).await;
    assert_eq!(status, 0, "{err}");
    assert_eq!(out, "one\ntwo\none\ntwo\nthree\n");
    assert_eq!(err, "e1\n[berth] worker lost; retrying\n");
    let streamed = server.fake.seen(|seen| seen.streamed.clone());
    assert_eq!(streamed.len(), 4);
    for request in &streamed {
        // Following every attempt, offsets cannot be used: they would apply to the
        // second attempt too.
        assert_eq!(
            (
                request.attempt,
                request.stdout_offset,
                request.stderr_offset
            ),
            (0, 0, 0)
        );
    }
}

#[tokio::test]
async fn logs_of_one_attempt_resume_from_the_offsets_written() {
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![
            chunk(1, STDOUT, 0, "a1\n"),
            chunk(2, STDOUT, 0, "abc\n"),
            chunk(2, STDERR, 0, "err\n"),
            chunk(2, STDOUT, 4, "def\n"),
        ];
        script.breaks = [Break::Fail(2)].into();
    });
    let (status, out, err) = berth(&server, &["logs", "wr-1", "--attempt", "2"]).await;
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (0, "abc\ndef\n", "err\n")
    );
    let streamed = server.fake.seen(|seen| seen.streamed.clone());
    assert_eq!(streamed.len(), 2);
    assert!(!streamed[0].follow);
    assert_eq!(
        (
            streamed[1].attempt,
            streamed[1].stdout_offset,
            streamed[1].stderr_offset
        ),
        (2, 4, 4)
    );
}

#[tokio::test]
async fn logs_prints_every_attempt_and_follows_until_the_end() {
    use proto::{WorkRequestStatus::Completed, WorkResult::Failure};
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![
            chunk(1, STDOUT, 0, "first\n"),
            chunk(2, STDOUT, 0, "second\n"),
            chunk(2, SYSTEM, 0, "[berth] log truncated\n"),
        ];
        script.states = [ended(Completed, Failure, Some(1), "", "")].into();
    });
    // The container's exit status is `run`'s business; `logs -f` succeeded.
    let (status, out, err) = berth(&server, &["logs", "-f", "wr-1"]).await;
    assert_eq!((status, out.as_str()), (0, "first\nsecond\n"));
    assert_eq!(err, "[berth] log truncated\n");
    let (status, out, err) = berth(&server, &["logs", "nope"]).await;
    assert_eq!((status, out.as_str()), (1, ""));
    assert_eq!(err, "error: NOT_FOUND: work request nope not found\n");
}

#[tokio::test]
async fn run_says_why_when_berth_could_not_run_the_container() {
    use proto::{WorkRequestStatus::Completed, WorkResult::Error};
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![chunk(1, SYSTEM, 0, "[berth] pulling nope:1\n")];
        script.states = [ended(
            Completed,
            Error,
            None,
            "image-pull",
            "pull access denied",
        )]
        .into();
    });
    let (status, out, err) = berth(&server, &["run", "nope:1"]).await;
    assert_eq!((status, out.as_str()), (125, ""));
    assert_eq!(
        err,
        "[berth] pulling nope:1\n\
         error: work request wr-1 could not run (image-pull): pull access denied\n"
    );
}

#[tokio::test]
async fn run_of_a_cancelled_request_exits_130() {
    use proto::{WorkRequestStatus::Aborted, WorkResult::Unspecified};
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![chunk(1, STDOUT, 0, "working\n")];
        script.states = [ended(Aborted, Unspecified, Some(143), "cancelled", "")].into();
    });
    let (status, out, err) = berth(&server, &["run", "busybox"]).await;
    assert_eq!((status, out.as_str()), (130, "working\n"));
    assert_eq!(err, "error: work request wr-1 was cancelled\n");
}

#[tokio::test]
async fn interrupting_run_stops_following_without_cancelling() {
    let server = start().await;
    server.fake.script(|script| {
        script.chunks = vec![chunk(1, STDOUT, 0, "started\n")];
        // The stream keeps ending while the request runs: only Ctrl-C ends `run`.
        script.breaks = std::iter::repeat_n(Break::End(1), 1000).collect();
    });
    let out = SharedBuf::default();
    let watched = out.clone();
    let interrupt = async move {
        watched.shows("started\n").await;
    };
    let (status, out, err) = berth_live(&server, &["run", "busybox"], &out, interrupt).await;
    assert_eq!((status, out.as_str()), (130, "started\n"));
    assert_eq!(
        err,
        "stopped following; the work request goes on: berth logs -f wr-1\n"
    );
    assert!(!server.fake.seen(|seen| seen.cancelled));
}

#[tokio::test]
async fn run_help_lists_the_exit_statuses() {
    let server = start().await;
    let (status, out, _) = berth(&server, &["run", "--help"]).await;
    assert_eq!(status, 0);
    for code in ["124", "125", "130", "137", "0-255"] {
        assert!(out.contains(code), "{code}: {out}");
    }
}

#[tokio::test]
async fn get_as_json_has_the_contract_fields() {
    let server = start().await;
    let (status, out, _) = berth(&server, &["get", "wr-1", "-o", "json"]).await;
    assert_eq!(status, 0);
    let value = json(&out);
    assert_eq!(value["id"], "wr-1");
    assert_eq!(value["status"], "pending");
    assert_eq!(value["result"], Value::Null);
    assert_eq!(value["exit_code"], Value::Null);
    assert_eq!(value["pull_policy"], "if-not-present");
    assert_eq!(value["created_at"], "2023-11-14T22:13:20Z");
    assert!(value["attempts"].is_array());
}

#[tokio::test]
async fn list_passes_filters_and_prints_the_page_token() {
    let server = start().await;
    let (status, out, _) = berth(
        &server,
        &["list", "--status", "pending", "--limit", "2", "-o", "json"],
    )
    .await;
    assert_eq!(status, 0);
    let value = json(&out);
    assert_eq!(value["work_requests"][0]["id"], "wr-2");
    assert_eq!(value["next_page_token"], "page-2");
    let listed = server
        .fake
        .seen(|seen| seen.listed.clone())
        .expect("listed");
    assert_eq!(listed.status, proto::WorkRequestStatus::Pending as i32);
    assert_eq!(listed.page_size, 2);
}

#[tokio::test]
async fn list_as_table_has_a_header_and_a_row_per_request() {
    let server = start().await;
    let (status, out, err) = berth(&server, &["list"]).await;
    assert_eq!(status, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ID "), "{out}");
    assert!(lines[1].starts_with("wr-2 "), "{out}");
    assert!(err.contains("--page-token page-2"), "{err}");
}

#[tokio::test]
async fn token_create_prints_only_the_secret_on_stdout_with_a_warning() {
    let server = start().await;
    let (status, out, err) = berth(
        &server,
        &["token", "create", "--role", "worker", "--name", "host1"],
    )
    .await;
    assert_eq!(status, 0);
    assert_eq!(out, "berth_wkr_SECRET\n");
    assert!(err.contains("shown only once"), "{err}");
    let created = server
        .fake
        .seen(|seen| seen.created_token.clone())
        .expect("created");
    assert_eq!(created.role, proto::Role::Worker as i32);
    assert_eq!(created.name, "host1");

    let (status, out, err) = berth(
        &server,
        &["-o", "json", "token", "create", "--role", "worker"],
    )
    .await;
    assert_eq!((status, err.as_str()), (0, ""));
    let value = json(&out);
    assert_eq!(value["token"], "berth_wkr_SECRET");
    assert_eq!(value["role"], "worker");
    assert_eq!(value["id"], "tok-1");
}

#[tokio::test]
async fn server_errors_are_one_line_with_the_code_and_exit_1() {
    let server = start().await;
    let (status, out, err) = berth(&server, &["cancel", "wr-1"]).await;
    assert_eq!(status, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "error: FAILED_PRECONDITION: work request wr-1 is already completed\n"
    );
    let (status, _, err) = berth(&server, &["get", "nope"]).await;
    assert_eq!(status, 1);
    assert_eq!(err, "error: NOT_FOUND: work request nope not found\n");
}
