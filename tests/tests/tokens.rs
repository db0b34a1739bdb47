//! Token lifecycle over real gRPC and a real database: creation shows the secret once,
//! only its SHA-256 is stored, and disabling, deleting or expiring a token makes the very
//! next call with it fail. Users manage only their own tokens; someone else's token looks
//! exactly like one that does not exist.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use berth_common::proto::token_service_client::TokenServiceClient;
use berth_common::proto::{
    CreateTokenRequest, CreateTokenResponse, DeleteTokenRequest, DisableTokenRequest,
    EnableTokenRequest, ListTokensRequest, Role, TokenInfo,
};
use berth_common::token::{Token, TokenKind};
use berth_tests::{Authed, TestServer, at, refused};
use tonic::Code;

/// Creates a token with `client`, or panics naming the request.
async fn create(
    client: &mut TokenServiceClient<Authed>,
    request: CreateTokenRequest,
) -> CreateTokenResponse {
    let shown = format!("{request:?}");
    client
        .create_token(request)
        .await
        .unwrap_or_else(|status| panic!("create {shown}: {status}"))
        .into_inner()
}

/// A create request for `role` and `name`, everything else default.
fn request(role: Role, name: &str) -> CreateTokenRequest {
    CreateTokenRequest {
        role: role as i32,
        name: name.to_owned(),
        ..Default::default()
    }
}

async fn list(client: &mut TokenServiceClient<Authed>) -> Vec<TokenInfo> {
    client
        .list_tokens(ListTokensRequest {})
        .await
        .expect("list tokens")
        .into_inner()
        .tokens
}

/// Whether `token` is accepted, judged by a call every admin and user may make.
async fn works(server: &TestServer, token: &str) -> Result<(), tonic::Status> {
    server
        .tokens(token)
        .await
        .list_tokens(ListTokensRequest {})
        .await
        .map(drop)
}

/// An SQL literal for a token id returned by the API (checked to be a UUID first).
fn sql_id(id: &str) -> String {
    format!(
        "'{}'",
        uuid::Uuid::parse_str(id).expect("token ids are UUIDs")
    )
}

fn system_time(at: &prost_types::Timestamp) -> SystemTime {
    SystemTime::try_from(*at).expect("a representable timestamp")
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_admin_token_is_in_a_private_file_and_is_the_only_token() {
    let server = TestServer::start().await;
    let path = server.data_dir.path().join("admin.token");
    let file = std::fs::read_to_string(&path).expect("admin.token is readable");
    assert_eq!(file.trim(), server.admin_token);
    let mode = std::fs::metadata(&path)
        .expect("admin.token metadata")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "admin.token mode is {:o}",
        mode & 0o777
    );

    let token = Token::parse(&server.admin_token).expect("the bootstrap token is well-formed");
    assert_eq!(token.kind(), TokenKind::Admin);

    let tokens = list(&mut server.tokens(&server.admin_token).await).await;
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(tokens[0].role(), Role::Admin);
    assert_eq!(tokens[0].owner, "admin");
    assert_eq!(tokens[0].prefix, "berth_adm_");
    assert!(tokens[0].enabled);
    assert_eq!(
        tokens[0].expires_at, None,
        "the bootstrap token never expires"
    );

    let rows = berth_tests::query(&server.database_url, "SELECT hash FROM tokens").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, Vec<u8>>(0), token.hash().0.to_vec());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn created_token_is_shown_once_with_its_role_prefix_and_parses() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    for (role, kind, name) in [
        (Role::Admin, TokenKind::Admin, "root2"),
        (Role::User, TokenKind::User, "alice"),
        (Role::Worker, TokenKind::Worker, "build-01.example"),
    ] {
        let created = create(
            &mut admin,
            CreateTokenRequest {
                comment: format!("{kind} for tests"),
                ..request(role, name)
            },
        )
        .await;
        assert!(
            created.token.starts_with(kind.prefix()),
            "a {kind} token must start with {}",
            kind.prefix()
        );
        let parsed = Token::parse(&created.token).expect("a created token parses");
        assert_eq!(parsed.kind(), kind);

        let info = created.info.expect("info");
        uuid::Uuid::parse_str(&info.id).expect("the id is a UUID");
        assert_eq!(info.role(), role);
        assert_eq!(info.owner, name);
        assert_eq!(info.prefix, kind.prefix());
        assert_eq!(info.comment, format!("{kind} for tests"));
        assert!(info.enabled);
        assert!(info.created_at.is_some());
        assert_eq!(info.expires_at, None);
        assert_eq!(info.last_used_at, None);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_answer_after_creation_contains_the_secret() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    let created = create(&mut admin, request(Role::User, "alice")).await;
    let id = created.info.expect("info").id;
    let secret = created.token;
    // The random part alone must not leak either (say, with the prefix cut off).
    let body = &secret[TokenKind::User.prefix().len()..];

    let mut answers = vec![
        format!("{:?}", admin.list_tokens(ListTokensRequest {}).await),
        format!(
            "{:?}",
            admin
                .disable_token(DisableTokenRequest { id: id.clone() })
                .await
        ),
        format!(
            "{:?}",
            admin
                .enable_token(EnableTokenRequest { id: id.clone() })
                .await
        ),
    ];
    // The owner's own view too, after using it.
    answers.push(format!(
        "{:?}",
        server
            .tokens(&secret)
            .await
            .list_tokens(ListTokensRequest {})
            .await
    ));
    for answer in &answers {
        assert!(
            answer.contains(&id),
            "the answer is about the token: {answer}"
        );
        assert!(!answer.contains(body), "the secret leaked: {answer}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn database_holds_only_the_sha256_of_a_token() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    let mut secrets = vec![server.admin_token.clone()];
    for (role, name) in [
        (Role::Admin, "root2"),
        (Role::User, "alice"),
        (Role::Worker, "w1"),
    ] {
        let created = create(&mut admin, request(role, name)).await;
        let info = created.info.expect("info");
        let rows = berth_tests::query(
            &server.database_url,
            &format!("SELECT hash FROM tokens WHERE id = {}", sql_id(&info.id)),
        )
        .await;
        assert_eq!(rows.len(), 1);
        let token = Token::parse(&created.token).expect("parses");
        assert_eq!(rows[0].get::<_, Vec<u8>>(0), token.hash().0.to_vec());
        // Use it once, so that every code path that writes a token row has run.
        if role != Role::Worker {
            works(&server, &created.token)
                .await
                .expect("new token works");
        }
        secrets.push(created.token);
    }

    // Every column of every row of every table, as text: no secret, in plain or in hex.
    let tables = berth_tests::query(
        &server.database_url,
        "SELECT quote_ident(table_name) FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .await;
    let mut dumped = 0;
    for table in &tables {
        let table: String = table.get(0);
        for row in berth_tests::query(
            &server.database_url,
            &format!("SELECT t::text FROM {table} t"),
        )
        .await
        {
            let text: String = row.get(0);
            dumped += 1;
            for secret in &secrets {
                let body = &secret[TokenKind::User.prefix().len()..];
                let hex: String = body.bytes().map(|b| format!("{b:02x}")).collect();
                assert!(
                    !text.contains(body) && !text.contains(&hex),
                    "a token secret is stored in table {table}: {text}"
                );
            }
        }
    }
    assert!(dumped >= secrets.len(), "the dump saw the token rows");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_token_authenticates_its_owner() {
    let server = TestServer::start().await;
    let (id, secret) = server.create_token(Role::User, "alice").await;
    let mine = list(&mut server.tokens(&secret).await).await;
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].id, id);
    assert_eq!(mine[0].owner, "alice");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_token_is_refused_on_the_next_call() {
    let server = TestServer::start().await;
    let (id, secret) = server.create_token(Role::User, "alice").await;
    // One client, one connection: nothing about the earlier success may be remembered.
    let mut alice = server.tokens(&secret).await;
    alice
        .list_tokens(ListTokensRequest {})
        .await
        .expect("works before");

    let info = server
        .tokens(&server.admin_token)
        .await
        .disable_token(DisableTokenRequest { id: id.clone() })
        .await
        .expect("admin disables")
        .into_inner();
    assert_eq!(info.id, id);
    assert!(!info.enabled);

    refused(
        "call with a disabled token",
        alice.list_tokens(ListTokensRequest {}).await,
        Code::Unauthenticated,
    );
    let listed = list(&mut server.tokens(&server.admin_token).await).await;
    let listed = listed.iter().find(|t| t.id == id).expect("still listed");
    assert!(!listed.enabled);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn re_enabled_token_works_again() {
    let server = TestServer::start().await;
    let (id, secret) = server.create_token(Role::User, "alice").await;
    let mut admin = server.tokens(&server.admin_token).await;
    admin
        .disable_token(DisableTokenRequest { id: id.clone() })
        .await
        .expect("disable");
    refused(
        "disabled",
        works(&server, &secret).await,
        Code::Unauthenticated,
    );

    let info = admin
        .enable_token(EnableTokenRequest { id: id.clone() })
        .await
        .expect("enable")
        .into_inner();
    assert!(info.enabled);
    works(&server, &secret)
        .await
        .expect("a re-enabled token works");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_may_disable_and_delete_own_tokens() {
    let server = TestServer::start().await;
    let (_, secret) = server.create_token(Role::User, "alice").await;
    let mut alice = server.tokens(&secret).await;
    let second = create(&mut alice, request(Role::User, "")).await;
    let second_id = second.info.expect("info").id;

    let info = alice
        .disable_token(DisableTokenRequest {
            id: second_id.clone(),
        })
        .await
        .expect("alice disables her own token")
        .into_inner();
    assert!(!info.enabled);
    refused(
        "disabled",
        works(&server, &second.token).await,
        Code::Unauthenticated,
    );
    alice
        .delete_token(DeleteTokenRequest {
            id: second_id.clone(),
        })
        .await
        .expect("alice deletes her own token");
    let mine: Vec<String> = list(&mut alice).await.into_iter().map(|t| t.id).collect();
    assert!(!mine.contains(&second_id), "{mine:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_token_is_refused_and_gone() {
    let server = TestServer::start().await;
    let (id, secret) = server.create_token(Role::User, "alice").await;
    works(&server, &secret).await.expect("works before");
    let mut admin = server.tokens(&server.admin_token).await;
    admin
        .delete_token(DeleteTokenRequest { id: id.clone() })
        .await
        .expect("delete");

    refused(
        "deleted",
        works(&server, &secret).await,
        Code::Unauthenticated,
    );
    assert!(!list(&mut admin).await.iter().any(|t| t.id == id));
    let rows = berth_tests::query(
        &server.database_url,
        &format!("SELECT 1 FROM tokens WHERE id = {}", sql_id(&id)),
    )
    .await;
    assert!(rows.is_empty(), "the row is gone");
    refused(
        "second delete",
        admin
            .delete_token(DeleteTokenRequest { id: id.clone() })
            .await,
        Code::NotFound,
    );
    refused(
        "enable after delete",
        admin.enable_token(EnableTokenRequest { id }).await,
        Code::NotFound,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_past_its_expiry_is_refused() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    let created = create(
        &mut admin,
        CreateTokenRequest {
            expires_in: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..request(Role::User, "alice")
        },
    )
    .await;
    let mut alice = server.tokens(&created.token).await;
    alice
        .list_tokens(ListTokensRequest {})
        .await
        .expect("works before");
    // The server now remembers the token; expiry must still take effect on time. Wait
    // for the expiry the server stated (the clock is the condition), and not a moment
    // longer than its millisecond precision.
    let expires_at = at(created.info.as_ref().expect("info").expires_at.as_ref());
    if let Ok(left) = expires_at.duration_since(SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_millis(1)).await;
    }
    match alice.list_tokens(ListTokensRequest {}).await {
        Ok(_) => panic!("an expired token was accepted"),
        Err(status) => {
            assert_eq!(status.code(), Code::Unauthenticated);
            assert!(
                status.message().contains("expired"),
                "the message says why: {}",
                status.message()
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expires_in_sets_the_expiry_from_now_and_the_token_works_until_then() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    let valid_for = Duration::from_secs(90 * 60);
    let before = SystemTime::now();
    let created = create(
        &mut admin,
        CreateTokenRequest {
            expires_in: Some(prost_types::Duration {
                seconds: 90 * 60,
                nanos: 0,
            }),
            ..request(Role::User, "alice")
        },
    )
    .await;
    let after = SystemTime::now();
    let info = created.info.expect("info");
    let expires_at = system_time(info.expires_at.as_ref().expect("expires_at is set"));
    // The database keeps microseconds: allow that much rounding either way.
    let slack = Duration::from_millis(1);
    assert!(
        expires_at + slack >= before + valid_for && expires_at <= after + valid_for + slack,
        "expires_at {expires_at:?} is not {valid_for:?} after the call ({before:?}..{after:?})"
    );
    works(&server, &created.token)
        .await
        .expect("a token is valid before its expiry");
    let listed = list(&mut admin).await;
    let listed = listed.iter().find(|t| t.id == info.id).expect("listed");
    assert_eq!(listed.expires_at, info.expires_at);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn last_used_at_is_set_once_a_token_is_used() {
    let server = TestServer::start().await;
    let (id, secret) = server.create_token(Role::User, "alice").await;
    let mut admin = server.tokens(&server.admin_token).await;
    let unused = list(&mut admin).await;
    let unused = unused.iter().find(|t| t.id == id).expect("listed");
    assert_eq!(unused.last_used_at, None, "never used yet");

    let before = SystemTime::now();
    works(&server, &secret).await.expect("use it");
    let after = SystemTime::now();
    let used = list(&mut admin).await;
    let used = used.iter().find(|t| t.id == id).expect("listed");
    let last_used = system_time(used.last_used_at.as_ref().expect("last_used_at is set"));
    let slack = Duration::from_millis(1);
    assert!(
        last_used + slack >= before && last_used <= after + slack,
        "last_used_at {last_used:?} is not the time of the call ({before:?}..{after:?})"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_lists_only_own_tokens_and_admin_lists_all() {
    let server = TestServer::start().await;
    let (alice_1, alice_secret) = server.create_token(Role::User, "alice").await;
    let (alice_2, _) = server.create_token(Role::User, "alice").await;
    let (bob, _) = server.create_token(Role::User, "bob").await;
    let (worker, _) = server.create_token(Role::Worker, "w1").await;

    let mine = list(&mut server.tokens(&alice_secret).await).await;
    let ids: BTreeSet<String> = mine.iter().map(|t| t.id.clone()).collect();
    assert_eq!(ids, BTreeSet::from([alice_1.clone(), alice_2.clone()]));
    assert!(mine.iter().all(|t| t.owner == "alice"), "{mine:#?}");

    let all = list(&mut server.tokens(&server.admin_token).await).await;
    let ids: BTreeSet<String> = all.iter().map(|t| t.id.clone()).collect();
    for id in [&alice_1, &alice_2, &bob, &worker] {
        assert!(ids.contains(id), "admin sees {id}");
    }
    assert_eq!(all.len(), 5, "the four new tokens and the bootstrap one");
    let order: Vec<&str> = all.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        order[..4],
        [&worker, &bob, &alice_2, &alice_1].map(String::as_str),
        "newest first"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_cannot_touch_someone_elses_token_and_it_looks_unknown() {
    let server = TestServer::start().await;
    let (_, alice_secret) = server.create_token(Role::User, "alice").await;
    let (bob_id, bob_secret) = server.create_token(Role::User, "bob").await;
    let (worker_id, _) = server.create_token(Role::Worker, "w1").await;
    let admin_id = list(&mut server.tokens(&server.admin_token).await)
        .await
        .into_iter()
        .find(|t| t.owner == "admin")
        .expect("the bootstrap token")
        .id;
    let mut alice = server.tokens(&alice_secret).await;

    for (whose, id) in [
        ("bob's", &bob_id),
        ("the worker's", &worker_id),
        ("the admin's", &admin_id),
    ] {
        let unknown = uuid::Uuid::new_v4().to_string();
        let answers = [
            (
                "disable",
                alice
                    .disable_token(DisableTokenRequest { id: id.clone() })
                    .await
                    .map(drop),
                alice
                    .disable_token(DisableTokenRequest {
                        id: unknown.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "enable",
                alice
                    .enable_token(EnableTokenRequest { id: id.clone() })
                    .await
                    .map(drop),
                alice
                    .enable_token(EnableTokenRequest {
                        id: unknown.clone(),
                    })
                    .await
                    .map(drop),
            ),
            (
                "delete",
                alice
                    .delete_token(DeleteTokenRequest { id: id.clone() })
                    .await
                    .map(drop),
                alice
                    .delete_token(DeleteTokenRequest {
                        id: unknown.clone(),
                    })
                    .await
                    .map(drop),
            ),
        ];
        for (action, theirs, nobodys) in answers {
            let what = format!("alice tries to {action} {whose} token");
            let theirs = theirs.expect_err(&what);
            let nobodys = nobodys.expect_err("an unknown id");
            assert_eq!(theirs.code(), Code::NotFound, "{what}: {theirs}");
            // Same answer as for an id nobody holds, so ids cannot be probed.
            assert_eq!(
                theirs.message().replace(id.as_str(), "<id>"),
                nobodys.message().replace(&unknown, "<id>"),
                "{what}"
            );
        }
    }

    works(&server, &bob_secret)
        .await
        .expect("bob's token still works");
    let all = list(&mut server.tokens(&server.admin_token).await).await;
    for id in [&bob_id, &worker_id, &admin_id] {
        let token = all.iter().find(|t| &t.id == id).expect("still there");
        assert!(token.enabled, "{id} is still enabled");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_may_create_only_user_tokens_for_themselves() {
    let server = TestServer::start().await;
    let (_, alice_secret) = server.create_token(Role::User, "alice").await;
    let mut alice = server.tokens(&alice_secret).await;

    for (what, request) in [
        ("an admin token", request(Role::Admin, "")),
        ("a worker token", request(Role::Worker, "")),
        ("a worker token with a name", request(Role::Worker, "w1")),
        ("a user token for bob", request(Role::User, "bob")),
        ("an admin token for herself", request(Role::Admin, "alice")),
    ] {
        refused(
            &format!("alice creates {what}"),
            alice.create_token(request).await,
            Code::PermissionDenied,
        );
    }
    let users = berth_tests::query(
        &server.database_url,
        "SELECT name FROM users WHERE name = 'bob'",
    )
    .await;
    assert!(users.is_empty(), "a refused request created user bob");
    assert_eq!(
        list(&mut server.tokens(&server.admin_token).await)
            .await
            .len(),
        2,
        "nothing was created"
    );

    // Her own name is allowed, and so is leaving it empty.
    for name in ["alice", ""] {
        let created = create(&mut alice, request(Role::User, name)).await;
        let info = created.info.expect("info");
        assert_eq!(info.owner, "alice");
        assert_eq!(info.role(), Role::User);
        works(&server, &created.token)
            .await
            .expect("her new token works");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_creates_a_token_for_a_new_user() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    let created = create(&mut admin, request(Role::User, "alice")).await;
    let info = created.info.expect("info");
    assert_eq!(info.owner, "alice");
    assert_eq!(info.role(), Role::User);

    let users =
        berth_tests::query(&server.database_url, "SELECT name FROM users ORDER BY name").await;
    let names: Vec<String> = users.iter().map(|row| row.get(0)).collect();
    assert_eq!(names, ["admin", "alice"]);

    let mine = list(&mut server.tokens(&created.token).await).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, info.id);
    assert_eq!(mine[0].owner, "alice");

    // The admin's own tokens are not alice's: an empty name means the caller.
    let own = create(&mut admin, request(Role::User, "")).await;
    assert_eq!(own.info.expect("info").owner, "admin");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_create_requests_are_invalid_argument_naming_the_field() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    let years = |n: i64| n * 365 * 24 * 3600;
    let duration = |seconds: i64, nanos: i32| Some(prost_types::Duration { seconds, nanos });
    let cases = [
        ("role", request(Role::Unspecified, "alice")),
        (
            "role",
            CreateTokenRequest {
                role: 99,
                ..request(Role::User, "alice")
            },
        ),
        ("name", request(Role::User, "bad name!")),
        ("name", request(Role::User, &"a".repeat(64))),
        ("name", request(Role::Worker, "-w")),
        (
            "comment",
            CreateTokenRequest {
                comment: "c".repeat(1001),
                ..request(Role::User, "alice")
            },
        ),
        (
            "expires_in",
            CreateTokenRequest {
                expires_in: duration(-1, 0),
                ..request(Role::User, "alice")
            },
        ),
        (
            "expires_in",
            CreateTokenRequest {
                expires_in: duration(0, 0),
                ..request(Role::User, "alice")
            },
        ),
        (
            "expires_in",
            CreateTokenRequest {
                expires_in: duration(years(11), 0),
                ..request(Role::User, "alice")
            },
        ),
        (
            "expires_in",
            CreateTokenRequest {
                expires_in: duration(i64::MAX, 0),
                ..request(Role::User, "alice")
            },
        ),
    ];
    for (field, request) in cases {
        let shown = format!("{request:?}");
        let shown = &shown[..shown.len().min(200)];
        match admin.create_token(request).await {
            Ok(_) => panic!("accepted: {shown}"),
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::InvalidArgument,
                    "{shown}: {}",
                    status.message()
                );
                assert!(
                    status.message().starts_with(field),
                    "the message for {shown} should name {field}: {}",
                    status.message()
                );
            }
        }
    }
    assert_eq!(list(&mut admin).await.len(), 1, "nothing was created");
    let users = berth_tests::query(&server.database_url, "SELECT name FROM users").await;
    assert_eq!(users.len(), 1, "no user was created by a refused request");

    // The limits themselves are allowed: 1,000 characters (not bytes), 10 years.
    for request in [
        CreateTokenRequest {
            comment: "\u{e9}".repeat(1000),
            ..request(Role::User, "alice")
        },
        CreateTokenRequest {
            expires_in: duration(years(10), 0),
            ..request(Role::User, "alice")
        },
        CreateTokenRequest {
            expires_in: duration(0, 1_000_000),
            ..request(Role::User, &format!("a{}", "b".repeat(62)))
        },
    ] {
        create(&mut admin, request).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_token_id_is_invalid_argument_and_unknown_id_is_not_found() {
    let server = TestServer::start().await;
    let mut admin = server.tokens(&server.admin_token).await;
    for id in ["not-a-uuid", ""] {
        let answers = [
            (
                "enable",
                admin
                    .enable_token(EnableTokenRequest { id: id.into() })
                    .await
                    .map(drop),
            ),
            (
                "disable",
                admin
                    .disable_token(DisableTokenRequest { id: id.into() })
                    .await
                    .map(drop),
            ),
            (
                "delete",
                admin
                    .delete_token(DeleteTokenRequest { id: id.into() })
                    .await
                    .map(drop),
            ),
        ];
        for (action, answer) in answers {
            let status = answer.expect_err(action);
            assert_eq!(status.code(), Code::InvalidArgument, "{action} {id:?}");
            assert!(
                status.message().starts_with("id"),
                "{action} {id:?}: the message names the field: {}",
                status.message()
            );
        }
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    refused(
        "enable an unknown id",
        admin
            .enable_token(EnableTokenRequest {
                id: unknown.clone(),
            })
            .await,
        Code::NotFound,
    );
    refused(
        "disable an unknown id",
        admin
            .disable_token(DisableTokenRequest {
                id: unknown.clone(),
            })
            .await,
        Code::NotFound,
    );
    refused(
        "delete an unknown id",
        admin.delete_token(DeleteTokenRequest { id: unknown }).await,
        Code::NotFound,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_token_cannot_re_enable_an_admin_token_an_admin_disabled() {
    let server = TestServer::start().await;
    // Carol holds an admin token and a user token; an admin revokes the admin one.
    let (carol_admin_id, carol_admin) = server.create_token(Role::Admin, "carol").await;
    let (_, carol_user) = server.create_token(Role::User, "carol").await;
    server
        .tokens(&server.admin_token)
        .await
        .disable_token(DisableTokenRequest {
            id: carol_admin_id.clone(),
        })
        .await
        .expect("admin disables carol's admin token");

    let mut carol = server.tokens(&carol_user).await;
    refused(
        "carol's user token re-enables her admin token",
        carol
            .enable_token(EnableTokenRequest {
                id: carol_admin_id.clone(),
            })
            .await,
        Code::PermissionDenied,
    );
    refused(
        "the revoked admin token",
        works(&server, &carol_admin).await,
        Code::Unauthenticated,
    );

    // Giving up power stays allowed: she may still disable and delete it herself.
    carol
        .disable_token(DisableTokenRequest {
            id: carol_admin_id.clone(),
        })
        .await
        .expect("carol disables her own admin token");
    carol
        .delete_token(DeleteTokenRequest { id: carol_admin_id })
        .await
        .expect("carol deletes her own admin token");
    server.stop().await;
}
