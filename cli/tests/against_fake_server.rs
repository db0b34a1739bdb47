//! Drives `berth` through its public entry point against an in-process fake server, to
//! check what goes over the wire (the bearer token, the request fields) and what comes out
//! (stdout, stderr, exit status). The real server is tested in the `tests` crate; the fake
//! only answers with canned messages and records what it was sent.

use std::sync::{Arc, Mutex, PoisonError};

use berth_common::proto;
use berth_common::proto::token_service_server::{TokenService, TokenServiceServer};
use berth_common::proto::work_request_service_server::{
    WorkRequestService, WorkRequestServiceServer,
};
use serde_json::Value;
use tokio::sync::oneshot;
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
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Seen>>,
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
        Ok(Response::new(pending_request("wr-1")))
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
        self.record(&request, |_| {});
        Err(Status::failed_precondition(
            "work request wr-1 is already completed",
        ))
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

#[tokio::test]
async fn run_without_detach_also_prints_the_id_for_now() {
    let server = start().await;
    let (status, out, _) = berth(&server, &["run", "busybox"]).await;
    assert_eq!((status, out.as_str()), (0, "wr-1\n"));
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
