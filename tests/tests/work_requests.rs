//! `berth.v1.WorkRequestService` over real gRPC against a real server and PostgreSQL:
//! submission with defaults filled in, validation of every field, secrets that never
//! leave the server (nor sit in the database in plain form), listing with filters and
//! pagination, and cancel with its ownership rules.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: a failed call should fail the test"
)]

use std::collections::{HashMap, HashSet};

use berth_common::proto::{
    CancelWorkRequestRequest, ContainerSpec, GetWorkRequestRequest, ListWorkRequestsRequest,
    PullPolicy, Role, SubmitWorkRequestRequest, WorkRequest, WorkRequestStatus, WorkResult,
};
use berth_core::store::secrets::SecretBox;
use berth_tests::{TestServer, get, query, secs};
use tonic::Code;

/// A secret env value that must never come back from the server in any form.
const SECRET: &str = "s3cret-value-9f2c71";

const MIB: u64 = 1024 * 1024;
const WEEK_SECONDS: i64 = 7 * 24 * 3600;

fn map(entries: &[(&str, &str)]) -> HashMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A minimal valid spec.
fn busybox() -> ContainerSpec {
    ContainerSpec {
        image: "busybox:1.36".into(),
        command: vec!["sh".into(), "-c".into(), "echo hi".into()],
        ..Default::default()
    }
}

fn request(spec: ContainerSpec) -> SubmitWorkRequestRequest {
    SubmitWorkRequestRequest {
        spec: Some(spec),
        ..Default::default()
    }
}

/// Submits a minimal valid request as `token` and returns it.
async fn submit(server: &TestServer, token: &str) -> WorkRequest {
    berth_tests::try_submit(server, token, request(busybox()))
        .await
        .unwrap()
}

async fn list(server: &TestServer, req: ListWorkRequestsRequest) -> Vec<WorkRequest> {
    server
        .work_requests(&server.admin_token)
        .await
        .list_work_requests(req)
        .await
        .unwrap()
        .into_inner()
        .work_requests
}

fn ids(requests: &[WorkRequest]) -> Vec<&str> {
    requests.iter().map(|r| r.id.as_str()).collect()
}

/// Asserts INVALID_ARGUMENT naming `field`, without the secret value anywhere in it.
fn assert_invalid(
    case: &str,
    result: Result<tonic::Response<WorkRequest>, tonic::Status>,
    field: &str,
) {
    let status = match result {
        Ok(response) => panic!("{case}: accepted, expected INVALID_ARGUMENT: {response:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
    assert!(
        status.message().contains(field),
        "{case}: the message should name {field}: {:?}",
        status.message()
    );
    let everything = format!("{status:?}");
    assert!(
        !everything.contains(SECRET),
        "{case}: the secret value leaked into the error: {everything}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn submitted_request_is_pending_with_defaults_filled_and_no_secret_values() {
    let server = TestServer::start().await;
    let submitted = server
        .work_requests(&server.admin_token)
        .await
        .submit_work_request(SubmitWorkRequestRequest {
            spec: Some(ContainerSpec {
                env: map(&[("GREETING", "hello")]),
                secret_env: map(&[("API_TOKEN", SECRET)]),
                ..busybox()
            }),
            requirements: map(&[("arch", "amd64")]),
            priority: 7,
            workspace: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    assert!(
        uuid::Uuid::parse_str(&submitted.id).is_ok(),
        "{submitted:?}"
    );
    assert_eq!(submitted.status, WorkRequestStatus::Pending as i32);
    assert_eq!(submitted.result, WorkResult::Unspecified as i32);
    assert_eq!(submitted.workspace, "default");
    assert_eq!(submitted.created_by, "admin");
    assert_eq!(submitted.priority_base, 7);
    assert_eq!(submitted.priority_adjustment, 0);
    assert_eq!(submitted.priority, 7);
    assert_eq!(submitted.requirements, map(&[("arch", "amd64")]));
    assert_eq!(submitted.secret_env_keys, ["API_TOKEN"]);
    assert!(submitted.created_at.is_some());
    assert_eq!(submitted.started_at, None);
    assert_eq!(submitted.completed_at, None);
    assert_eq!(submitted.exit_code, None);
    assert_eq!(submitted.reason, "");
    assert_eq!(submitted.attempt_count, 0);
    assert!(submitted.attempts.is_empty());

    let spec = submitted.spec.clone().unwrap();
    assert_eq!(spec.image, "busybox:1.36");
    assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
    assert_eq!(spec.env, map(&[("GREETING", "hello")]));
    assert!(spec.secret_env.is_empty(), "{spec:?}");
    assert_eq!(spec.working_dir, "");
    assert_eq!(spec.memory_bytes, Some(1024 * MIB));
    assert_eq!(spec.cpus, Some(1.0));
    assert_eq!(spec.pids_limit, Some(1024));
    assert_eq!(spec.timeout, Some(secs(3600)));
    assert_eq!(spec.stop_grace_period, Some(secs(10)));
    assert_eq!(spec.network, "none");
    assert_eq!(spec.pull_policy, PullPolicy::IfNotPresent as i32);

    // Get adds where the request stands in the queue; everything else is the same.
    let mut fetched = get(&server, &submitted.id).await;
    assert_eq!(fetched.queue_position, 1);
    assert_eq!(fetched.pending_reason, "no worker is connected");
    fetched.queue_position = submitted.queue_position;
    fetched.pending_reason = submitted.pending_reason.clone();
    assert_eq!(fetched, submitted);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn request_submitted_with_a_user_token_is_created_by_that_user() {
    let server = TestServer::start().await;
    let (_, alice) = server.create_token(Role::User, "alice").await;
    let submitted = submit(&server, &alice).await;
    assert_eq!(submitted.created_by, "alice");
    assert_eq!(get(&server, &submitted.id).await.created_by, "alice");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_of_an_unknown_id_is_not_found_and_of_a_malformed_id_invalid_argument() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let status = client
        .get_work_request(GetWorkRequestRequest {
            id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains(&unknown), "{status:?}");

    for bad in ["not-a-uuid", ""] {
        let status = client
            .get_work_request(GetWorkRequestRequest { id: bad.into() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        assert!(status.message().contains("id"), "{status:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_are_never_returned_and_stored_only_encrypted() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;
    let submitted = client
        .submit_work_request(request(ContainerSpec {
            env: map(&[("PLAIN", "visible")]),
            secret_env: map(&[("DB_PASSWORD", SECRET)]),
            ..busybox()
        }))
        .await
        .unwrap()
        .into_inner();

    let got = client
        .get_work_request(GetWorkRequestRequest {
            id: submitted.id.clone(),
        })
        .await
        .unwrap();
    let listed = client
        .list_work_requests(ListWorkRequestsRequest::default())
        .await
        .unwrap();
    for (what, text) in [
        ("submit", format!("{submitted:?}")),
        ("get", format!("{got:?}")),
        ("list", format!("{listed:?}")),
    ] {
        assert!(!text.contains(SECRET), "{what} returned the secret: {text}");
        assert!(
            text.contains("DB_PASSWORD"),
            "{what} should name the key: {text}"
        );
    }

    // Every column of the row as text: the value must not be there, neither as text nor
    // as the hex of its bytes (how bytea prints).
    let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    let rows = query(
        &server.database_url,
        "SELECT row_to_json(w)::text FROM work_requests w",
    )
    .await;
    assert_eq!(rows.len(), 1);
    let row: String = rows[0].get(0);
    assert!(row.contains("DB_PASSWORD"), "{row}");
    assert!(row.contains("visible"), "{row}");
    assert!(!row.contains(SECRET), "secret stored in plain text: {row}");
    assert!(!row.contains(&hex), "secret stored as plain bytes: {row}");

    // It is stored, though: sealed with the server's key, and it opens to the value.
    let rows = query(&server.database_url, "SELECT secret_env FROM work_requests").await;
    let sealed: Option<Vec<u8>> = rows[0].get(0);
    let sealed = sealed.expect("secret_env should be stored (sealed), not null");
    let key = SecretBox::load_or_create(&server.data_dir.path().join("secret.key")).unwrap();
    let opened = key.open(&sealed).unwrap();
    assert_eq!(opened.get("DB_PASSWORD").map(String::as_str), Some(SECRET));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invalid_field_is_refused_with_invalid_argument_naming_it() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;

    // Every bad spec also carries a secret, so each error message is checked for it.
    let with_secret = |spec: ContainerSpec| {
        let mut secret_env = spec.secret_env.clone();
        secret_env.entry("SECRET_X".into()).or_insert(SECRET.into());
        ContainerSpec { secret_env, ..spec }
    };
    let bad_spec = |case: &'static str, field: &'static str, spec: ContainerSpec| {
        (case, field, request(with_secret(spec)))
    };
    let big = "x".repeat(64 * 1024);
    let cases: Vec<(&str, &str, SubmitWorkRequestRequest)> = vec![
        ("missing spec", "spec", SubmitWorkRequestRequest::default()),
        bad_spec("empty image", "spec.image", image("")),
        bad_spec("capital letters in image", "spec.image", image("Busybox")),
        bad_spec("empty tag", "spec.image", image("busybox:")),
        bad_spec("empty path component", "spec.image", image("a//b")),
        bad_spec("image given as a URL", "spec.image", image("http://x/y")),
        bad_spec(
            "empty argument",
            "spec.command[1]",
            ContainerSpec {
                command: vec!["echo".into(), String::new()],
                ..busybox()
            },
        ),
        bad_spec(
            "1001 arguments",
            "spec.command",
            ContainerSpec {
                command: vec!["x".into(); 1001],
                ..busybox()
            },
        ),
        bad_spec(
            "env key starting with a digit",
            "spec.env[\"1BAD\"]",
            ContainerSpec {
                env: map(&[("1BAD", "v")]),
                ..busybox()
            },
        ),
        bad_spec(
            "env key with a dash",
            "spec.env[\"A-B\"]",
            ContainerSpec {
                env: map(&[("A-B", "v")]),
                ..busybox()
            },
        ),
        bad_spec(
            "key in both env and secret_env",
            "spec.secret_env[\"SAME\"]",
            ContainerSpec {
                env: map(&[("SAME", "plain")]),
                secret_env: map(&[("SAME", SECRET)]),
                ..busybox()
            },
        ),
        bad_spec(
            "env over 64 KiB in total",
            "spec.env",
            ContainerSpec {
                env: map(&[("BIG", &big)]),
                ..busybox()
            },
        ),
        bad_spec(
            "secret env pushing the total over 64 KiB",
            "spec.env",
            ContainerSpec {
                env: map(&[("HALF", &big[..40 * 1024])]),
                secret_env: map(&[("BIG_SECRET", &SECRET.repeat(2000))]),
                ..busybox()
            },
        ),
        bad_spec(
            "relative working_dir",
            "spec.working_dir",
            ContainerSpec {
                working_dir: "work/dir".into(),
                ..busybox()
            },
        ),
        bad_spec(
            "memory 1 MiB",
            "spec.memory_bytes",
            ContainerSpec {
                memory_bytes: Some(MIB),
                ..busybox()
            },
        ),
        bad_spec("cpus 0", "spec.cpus", cpus(0.0)),
        bad_spec("cpus -1", "spec.cpus", cpus(-1.0)),
        bad_spec("cpus 1025", "spec.cpus", cpus(1025.0)),
        bad_spec(
            "pids 0",
            "spec.pids_limit",
            ContainerSpec {
                pids_limit: Some(0),
                ..busybox()
            },
        ),
        bad_spec("timeout 0", "spec.timeout", timeout(0)),
        bad_spec("negative timeout", "spec.timeout", timeout(-5)),
        bad_spec(
            "timeout 7 days + 1 s",
            "spec.timeout",
            timeout(WEEK_SECONDS + 1),
        ),
        bad_spec(
            "host network",
            "spec.network",
            ContainerSpec {
                network: "host".into(),
                ..busybox()
            },
        ),
        bad_spec(
            "unknown pull policy",
            "spec.pull_policy",
            ContainerSpec {
                pull_policy: 42,
                ..busybox()
            },
        ),
        (
            "requirement key with a space",
            "requirements[\"a b\"]",
            SubmitWorkRequestRequest {
                requirements: map(&[("a b", "v")]),
                ..request(with_secret(busybox()))
            },
        ),
        (
            "priority 1001",
            "priority",
            SubmitWorkRequestRequest {
                priority: 1001,
                ..request(with_secret(busybox()))
            },
        ),
    ];
    for (case, field, req) in cases {
        assert_invalid(case, client.submit_work_request(req).await, field);
    }

    let status = client
        .submit_work_request(SubmitWorkRequestRequest {
            workspace: "nope".into(),
            ..request(with_secret(busybox()))
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("nope"), "{status:?}");
    assert!(!format!("{status:?}").contains(SECRET), "{status:?}");

    // Nothing refused was stored.
    let stored = query(&server.database_url, "SELECT count(*) FROM work_requests").await;
    assert_eq!(stored[0].get::<_, i64>(0), 0);
    server.stop().await;
}

fn image(image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        ..busybox()
    }
}

fn cpus(cpus: f64) -> ContainerSpec {
    ContainerSpec {
        cpus: Some(cpus),
        ..busybox()
    }
}

fn timeout(seconds: i64) -> ContainerSpec {
    ContainerSpec {
        timeout: Some(secs(seconds)),
        ..busybox()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn values_at_the_limits_and_an_empty_command_are_accepted() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;
    let cases = [
        (
            "memory exactly 6 MiB",
            ContainerSpec {
                memory_bytes: Some(6 * MIB),
                ..busybox()
            },
        ),
        ("1024 cpus", cpus(1024.0)),
        ("timeout exactly 7 days", timeout(WEEK_SECONDS)),
        (
            "empty command (the image's default)",
            ContainerSpec {
                command: Vec::new(),
                ..busybox()
            },
        ),
    ];
    for (case, spec) in cases {
        let submitted = match client.submit_work_request(request(spec.clone())).await {
            Ok(response) => response.into_inner(),
            Err(status) => panic!("{case}: refused: {status:?}"),
        };
        let stored = submitted.spec.unwrap();
        assert_eq!(stored.command, spec.command, "{case}");
        if let Some(memory) = spec.memory_bytes {
            assert_eq!(stored.memory_bytes, Some(memory), "{case}");
        }
        if let Some(cpus) = spec.cpus {
            assert_eq!(stored.cpus, Some(cpus), "{case}");
        }
        if let Some(timeout) = spec.timeout {
            assert_eq!(stored.timeout, Some(timeout), "{case}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_message_limit_is_refused_with_berths_own_message() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;
    let huge = ContainerSpec {
        command: vec!["echo".into(), "x".repeat(5 * MIB as usize)],
        ..busybox()
    };
    let status = client
        .submit_work_request(request(huge))
        .await
        .expect_err("a 5 MiB request must be refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("limit of 4 MiB") && message.contains("send less"),
        "{message}"
    );
    assert!(!message.contains("decoded message length"), "{message}");
    // The connection stays usable, and nothing was submitted.
    let listed = client
        .list_work_requests(ListWorkRequestsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .work_requests;
    assert!(listed.is_empty(), "{listed:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_is_newest_first_and_filters_by_status_and_workspace() {
    let server = TestServer::start().await;
    query(
        &server.database_url,
        "INSERT INTO workspaces (id, name) VALUES (gen_random_uuid(), 'team')",
    )
    .await;
    let first = submit(&server, &server.admin_token).await;
    let second = submit(&server, &server.admin_token).await;
    let in_team = server
        .work_requests(&server.admin_token)
        .await
        .submit_work_request(SubmitWorkRequestRequest {
            workspace: "team".into(),
            ..request(busybox())
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(in_team.workspace, "team");

    let all = list(&server, ListWorkRequestsRequest::default()).await;
    assert_eq!(
        ids(&all),
        [in_team.id.as_str(), second.id.as_str(), first.id.as_str()]
    );
    assert!(
        all.iter().all(|r| r.attempts.is_empty()),
        "list leaves attempts out"
    );

    server
        .work_requests(&server.admin_token)
        .await
        .cancel_work_request(CancelWorkRequestRequest {
            id: second.id.clone(),
        })
        .await
        .unwrap();
    let pending = list(
        &server,
        ListWorkRequestsRequest {
            status: WorkRequestStatus::Pending as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&pending), [in_team.id.as_str(), first.id.as_str()]);
    let aborted = list(
        &server,
        ListWorkRequestsRequest {
            status: WorkRequestStatus::Aborted as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&aborted), [second.id.as_str()]);

    let team = list(
        &server,
        ListWorkRequestsRequest {
            workspace: "team".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&team), [in_team.id.as_str()]);
    let default = list(
        &server,
        ListWorkRequestsRequest {
            workspace: "default".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&default), [second.id.as_str(), first.id.as_str()]);
    let pending_in_default = list(
        &server,
        ListWorkRequestsRequest {
            status: WorkRequestStatus::Pending as i32,
            workspace: "default".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&pending_in_default), [first.id.as_str()]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_of_two_visit_five_requests_exactly_once() {
    let server = TestServer::start().await;
    let mut submitted = Vec::new();
    for _ in 0..5 {
        submitted.push(submit(&server, &server.admin_token).await.id);
    }
    submitted.reverse(); // newest first

    let mut client = server.work_requests(&server.admin_token).await;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_work_requests(ListWorkRequestsRequest {
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        sizes.push(page.work_requests.len());
        seen.extend(page.work_requests.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(sizes.len() < 5, "pagination does not end: {sizes:?}");
        page_token = page.next_page_token;
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen, submitted);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_refuses_a_page_size_over_1000_a_garbage_page_token_and_an_unknown_status() {
    let server = TestServer::start().await;
    let mut client = server.work_requests(&server.admin_token).await;
    let status = client
        .list_work_requests(ListWorkRequestsRequest {
            page_size: 1001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("page_size"), "{status:?}");

    let status = client
        .list_work_requests(ListWorkRequestsRequest {
            page_token: "garbage!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("page_token"), "{status:?}");

    let status = client
        .list_work_requests(ListWorkRequestsRequest {
            status: 42,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("status"), "{status:?}");

    client
        .list_work_requests(ListWorkRequestsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_aborts_a_pending_request_once() {
    let server = TestServer::start().await;
    let submitted = submit(&server, &server.admin_token).await;
    let mut client = server.work_requests(&server.admin_token).await;
    let cancel = CancelWorkRequestRequest {
        id: submitted.id.clone(),
    };

    let cancelled = client
        .cancel_work_request(cancel.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, WorkRequestStatus::Aborted as i32);
    assert_eq!(cancelled.reason, "cancelled");
    assert_eq!(cancelled.result, WorkResult::Unspecified as i32);
    assert!(cancelled.completed_at.is_some(), "{cancelled:?}");
    assert_eq!(get(&server, &submitted.id).await, cancelled);

    let status = client.cancel_work_request(cancel).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(get(&server, &submitted.id).await, cancelled);

    let status = client
        .cancel_work_request(CancelWorkRequestRequest {
            id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contributor_may_cancel_any_request_of_the_workspace_and_a_viewer_none() {
    let server = TestServer::start().await;
    let (_, bob) = server.create_token(Role::User, "bob").await;
    let (_, carol) = server.create_token(Role::User, "carol").await;
    server.set_role("default", "carol", "viewer").await;
    let admins = submit(&server, &server.admin_token).await;
    let bobs = submit(&server, &bob).await;

    // A viewer reads but may not cancel, whoever submitted.
    let mut viewer = server.work_requests(&carol).await;
    for id in [&admins.id, &bobs.id] {
        let status = viewer
            .cancel_work_request(CancelWorkRequestRequest { id: id.clone() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(
            status.message().contains("contributor role")
                && status.message().contains("you are viewer"),
            "{status:?}"
        );
        let still = get(&server, id).await;
        assert_eq!(still.status, WorkRequestStatus::Pending as i32);
        assert_eq!(still.completed_at, None);
    }
    let seen = viewer
        .get_work_request(GetWorkRequestRequest {
            id: admins.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.id, admins.id);

    // A contributor cancels the admin's request as well as their own.
    let mut client = server.work_requests(&bob).await;
    for id in [&admins.id, &bobs.id] {
        let cancelled = client
            .cancel_work_request(CancelWorkRequestRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cancelled.status, WorkRequestStatus::Aborted as i32);
        assert_eq!(cancelled.reason, "cancelled");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_token_may_not_use_the_work_request_service() {
    let server = TestServer::start().await;
    let (_, worker) = server.create_token(Role::Worker, "w1").await;
    let mut client = server.work_requests(&worker).await;
    let status = client
        .submit_work_request(request(busybox()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = client
        .list_work_requests(ListWorkRequestsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let stored = query(&server.database_url, "SELECT count(*) FROM work_requests").await;
    assert_eq!(stored[0].get::<_, i64>(0), 0);
    server.stop().await;
}
