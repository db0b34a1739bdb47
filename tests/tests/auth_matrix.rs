//! The authorization matrix: every RPC of every Berth service, called over real gRPC with
//! every kind of credential, against the rules in `berth_server::api::auth::RULES`.
//!
//! The list of methods comes from the compiled descriptor set, not from a hand-kept list,
//! so a new RPC is checked the moment it is added to a `.proto` file: without a rule it
//! fails [`every_rpc_has_exactly_one_authorization_rule`], and with one its rule is
//! exercised for every role here. Calls are made generically with an empty message (zero
//! bytes, a valid encoding of any message), so no test needs to know request types.
//!
//! A failing matrix prints every mismatch at once, as a table, so one run shows the whole
//! damage rather than the first wrong cell.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use berth_common::proto::{DisableTokenRequest, Role};
use berth_common::token::{Token, TokenKind};
use berth_server::api::auth::RULES;
use berth_tests::TestServer;
use prost::Message as _;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a stream may stay silent before the matrix counts it as accepted. Only a
/// safety net against a hang; no assertion depends on how long anything takes.
const STREAM_SILENCE: Duration = Duration::from_secs(10);

/// One RPC as the descriptor set describes it.
#[derive(Clone, Debug)]
struct Method {
    /// `/package.Service/Method`.
    path: String,
    /// Client- or server-streaming.
    streaming: bool,
    /// The comment above the `rpc` line in its `.proto` file.
    doc: String,
}

/// Field numbers in `descriptor.proto`, for finding a method's comment in
/// `SourceCodeInfo`: `FileDescriptorProto.service` and `ServiceDescriptorProto.method`.
const FILE_SERVICE_FIELD: i32 = 6;
const SERVICE_METHOD_FIELD: i32 = 2;

/// Every method of every service in a `berth` package, from the compiled descriptors.
fn berth_methods() -> Vec<Method> {
    let set = prost_types::FileDescriptorSet::decode(berth_common::FILE_DESCRIPTOR_SET)
        .expect("berth_common::FILE_DESCRIPTOR_SET decodes as a FileDescriptorSet");
    let mut methods = Vec::new();
    for file in &set.file {
        let package = file.package();
        // Every Berth package, so that a future `berth.v2` is covered too; imports such as
        // google.protobuf define no services anyway.
        if package != "berth" && !package.starts_with("berth.") {
            continue;
        }
        let locations = file
            .source_code_info
            .as_ref()
            .map(|info| info.location.as_slice())
            .unwrap_or_default();
        for (s, service) in file.service.iter().enumerate() {
            for (m, method) in service.method.iter().enumerate() {
                let at = [
                    FILE_SERVICE_FIELD,
                    i32::try_from(s).expect("few services"),
                    SERVICE_METHOD_FIELD,
                    i32::try_from(m).expect("few methods"),
                ];
                let doc = locations
                    .iter()
                    .find(|location| location.path == at)
                    .map(|location| location.leading_comments().to_owned())
                    .unwrap_or_default();
                methods.push(Method {
                    path: format!("/{package}.{}/{}", service.name(), method.name()),
                    streaming: method.client_streaming() || method.server_streaming(),
                    doc,
                });
            }
        }
    }
    methods
}

#[test]
fn descriptor_set_lists_every_berth_rpc() {
    let methods = berth_methods();
    let paths: BTreeSet<&str> = methods.iter().map(|m| m.path.as_str()).collect();
    assert!(!paths.is_empty(), "no berth services in the descriptor set");
    assert_eq!(paths.len(), methods.len(), "a method is listed twice");
    for expected in [
        "/berth.v1.TokenService/CreateToken",
        "/berth.v1.WorkerService/DisableWorker",
        "/berth.v1.WorkRequestService/SubmitWorkRequest",
        "/berth.v1.AgentService/Connect",
        "/berth.v1.AgentService/KeepContainers",
    ] {
        assert!(
            paths.contains(expected),
            "{expected} missing from {paths:#?}"
        );
    }
    let connect = methods
        .iter()
        .find(|m| m.path == "/berth.v1.AgentService/Connect")
        .expect("Connect is listed");
    assert!(connect.streaming, "Connect is a bidirectional stream");
}

#[test]
fn every_rpc_has_exactly_one_authorization_rule() {
    let methods: BTreeSet<String> = berth_methods().into_iter().map(|m| m.path).collect();
    let mut ruled = BTreeSet::new();
    let mut duplicated = Vec::new();
    for (path, _) in RULES {
        if !ruled.insert((*path).to_owned()) {
            duplicated.push(*path);
        }
    }
    let without_rule: Vec<_> = methods.difference(&ruled).collect();
    let without_method: Vec<_> = ruled.difference(&methods).collect();
    assert!(
        without_rule.is_empty() && without_method.is_empty() && duplicated.is_empty(),
        "RPCs without a rule in auth::RULES: {without_rule:?}\n\
         rules for RPCs that do not exist: {without_method:?}\n\
         rules listed more than once: {duplicated:?}"
    );
}

/// The roles a method's comment names in its `Callers: admin, user (...).` sentence.
fn documented_callers(doc: &str) -> Option<Vec<String>> {
    let (_, rest) = doc.split_once("Callers:")?;
    let sentence = rest.split('.').next().unwrap_or_default();
    Some(
        sentence
            .split(',')
            .filter_map(|part| part.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn authorization_rules_match_the_callers_documented_in_the_proto_files() {
    let mut wrong = Vec::new();
    for method in berth_methods() {
        let Some(documented) = documented_callers(&method.doc) else {
            wrong.push(format!(
                "{}: its comment has no `Callers: ...` sentence",
                method.path
            ));
            continue;
        };
        let documented: BTreeSet<String> = documented.into_iter().collect();
        let ruled: BTreeSet<String> = RULES
            .iter()
            .find(|(path, _)| *path == method.path)
            .map(|(_, roles)| roles.iter().map(|r| r.as_str().to_owned()).collect())
            .unwrap_or_default();
        if documented != ruled {
            wrong.push(format!(
                "{}: the proto says callers {documented:?}, auth::RULES allows {ruled:?}",
                method.path
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What a call should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Unauthenticated,
    PermissionDenied,
    /// Past authentication and authorization, answered by the handler itself.
    Handled,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expected::Unauthenticated => "UNAUTHENTICATED",
            Expected::PermissionDenied => "PERMISSION_DENIED",
            Expected::Handled => "handled (not refused by auth)",
        })
    }
}

/// What a call got.
#[derive(Debug)]
enum Outcome {
    Answered(tonic::Status),
    Ok,
    /// A stream the server kept open without a message or a status.
    StillOpen,
}

impl Outcome {
    fn meets(&self, expected: Expected) -> bool {
        match (self, expected) {
            (Outcome::Answered(s), Expected::Unauthenticated) => s.code() == Code::Unauthenticated,
            (Outcome::Answered(s), Expected::PermissionDenied) => {
                s.code() == Code::PermissionDenied
            }
            // A handler answering an empty request says INVALID_ARGUMENT, NOT_FOUND,
            // UNIMPLEMENTED and so on. The auth layer's own refusals, and the codes that
            // mean the call broke down (UNAVAILABLE from a token lookup, INTERNAL, UNKNOWN),
            // do not show that the call got through.
            (Outcome::Answered(s), Expected::Handled) => !matches!(
                s.code(),
                Code::Unauthenticated
                    | Code::PermissionDenied
                    | Code::Unavailable
                    | Code::Internal
                    | Code::Unknown
            ),
            (Outcome::Ok | Outcome::StillOpen, expected) => expected == Expected::Handled,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Answered(status) => {
                f.write_str(&berth_common::client::describe_status(status))
            }
            Outcome::Ok => f.write_str("OK"),
            Outcome::StillOpen => write!(f, "stream open, silent for {STREAM_SILENCE:?}"),
        }
    }
}

/// Adds `authorization: <value>` to `request` (nothing if `None`).
fn with_authorization<T>(mut request: tonic::Request<T>, value: Option<&str>) -> tonic::Request<T> {
    if let Some(value) = value {
        let value = MetadataValue::try_from(value).expect("an ASCII header value");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Calls `method` with an empty message and `authorization: <authorization>` (none if
/// `None`).
async fn call(channel: &Channel, method: &Method, authorization: Option<&str>) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("the channel is ready");
    let path = PathAndQuery::try_from(method.path.as_str()).expect("a method path is a URI path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    if !method.streaming {
        return match grpc
            .unary(
                with_authorization(tonic::Request::new(()), authorization),
                path,
                codec,
            )
            .await
        {
            Ok(_) => Outcome::Ok,
            Err(status) => Outcome::Answered(status),
        };
    }
    let request = with_authorization(tonic::Request::new(tokio_stream::once(())), authorization);
    let mut stream = match grpc.streaming(request, path, codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Outcome::Answered(status),
    };
    // The status may also arrive with (or instead of) the first message.
    match tokio::time::timeout(STREAM_SILENCE, stream.message()).await {
        Err(_) => Outcome::StillOpen,
        Ok(Ok(_)) => Outcome::Ok,
        Ok(Err(status)) => Outcome::Answered(status),
    }
}

/// A way of presenting oneself to the server.
struct Credential {
    label: String,
    /// The whole `authorization` header value, if any.
    authorization: Option<String>,
    /// The role of a valid token; `None` for anything the server must not accept.
    role: Option<TokenKind>,
}

impl Credential {
    fn refused(label: impl Into<String>, authorization: Option<String>) -> Credential {
        Credential {
            label: label.into(),
            authorization,
            role: None,
        }
    }

    fn bearer(label: impl Into<String>, secret: &str, role: Option<TokenKind>) -> Credential {
        Credential {
            label: label.into(),
            authorization: Some(format!("Bearer {secret}")),
            role,
        }
    }

    fn expected(&self, method: &Method) -> Expected {
        let Some(role) = self.role else {
            return Expected::Unauthenticated;
        };
        let rule = RULES
            .iter()
            .find(|(path, _)| *path == method.path)
            .map(|(_, roles)| *roles)
            .unwrap_or_default();
        if rule.contains(&role) {
            Expected::Handled
        } else {
            Expected::PermissionDenied
        }
    }
}

const KINDS: [(TokenKind, Role); 3] = [
    (TokenKind::Admin, Role::Admin),
    (TokenKind::User, Role::User),
    (TokenKind::Worker, Role::Worker),
];

/// Creates a token of `role` with the admin token, for a user (or worker) called `name`.
async fn new_token(server: &TestServer, role: Role, name: &str) -> (String, String) {
    let name = if role == Role::Worker { "" } else { name };
    server.create_token(role, name).await
}

/// Every credential of the matrix: the valid ones, and every way of being refused.
async fn credentials(server: &TestServer) -> Vec<Credential> {
    let mut all = vec![
        Credential::refused("no token", None),
        Credential::bearer("garbage token", "berth_usr_garbage", None),
        Credential::refused(
            "admin token without `Bearer`",
            Some(format!("Basic {}", server.admin_token)),
        ),
    ];
    let mut admin_tokens = server.tokens(&server.admin_token).await;
    for (kind, role) in KINDS {
        all.push(Credential::bearer(
            format!("unknown {kind} token"),
            Token::generate(kind).expose_secret(),
            None,
        ));

        let (id, secret) = new_token(server, role, &format!("disabled-{kind}")).await;
        admin_tokens
            .disable_token(DisableTokenRequest { id })
            .await
            .expect("admin disables a token");
        all.push(Credential::bearer(
            format!("disabled {kind} token"),
            &secret,
            None,
        ));

        let (id, secret) = new_token(server, role, &format!("expired-{kind}")).await;
        let id = uuid::Uuid::parse_str(&id).expect("token ids are UUIDs");
        berth_tests::query(
            &server.database_url,
            &format!("UPDATE tokens SET expires_at = now() - interval '1 hour' WHERE id = '{id}'"),
        )
        .await;
        all.push(Credential::bearer(
            format!("expired {kind} token"),
            &secret,
            None,
        ));

        let secret = if kind == TokenKind::Admin {
            server.admin_token.clone()
        } else {
            new_token(server, role, &format!("valid-{kind}")).await.1
        };
        all.push(Credential::bearer(
            format!("valid {kind} token"),
            &secret,
            Some(kind),
        ));
    }
    all
}

/// Lays mismatches out as an aligned table.
fn table(rows: &[[String; 4]]) -> String {
    let header = [
        "method".to_owned(),
        "credential".to_owned(),
        "got".to_owned(),
        "expected".to_owned(),
    ];
    let mut widths = [0; 4];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_refuses_bad_credentials_and_admits_exactly_the_roles_in_its_rule() {
    let server = TestServer::start().await;
    let methods = berth_methods();
    assert!(!methods.is_empty(), "no berth methods to check");
    let credentials = credentials(&server).await;
    let channel = server.channel().await;

    let mut mismatches = Vec::new();
    let mut checked = 0;
    for method in &methods {
        for credential in &credentials {
            let expected = credential.expected(method);
            let outcome = call(&channel, method, credential.authorization.as_deref()).await;
            checked += 1;
            if !outcome.meets(expected) {
                mismatches.push([
                    method.path.clone(),
                    credential.label.clone(),
                    outcome.to_string(),
                    expected.to_string(),
                ]);
            }
        }
    }
    assert_eq!(checked, methods.len() * credentials.len());
    assert!(
        mismatches.is_empty(),
        "{} of {checked} calls got the wrong answer:\n{}",
        mismatches.len(),
        table(&mismatches)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn method_without_a_rule_is_refused_even_for_an_admin() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    let unknown = Method {
        path: "/berth.v1.TokenService/NoSuchMethod".to_owned(),
        streaming: false,
        doc: String::new(),
    };
    assert!(!RULES.iter().any(|(path, _)| *path == unknown.path));

    let admin = format!("Bearer {}", server.admin_token);
    match call(&channel, &unknown, Some(&admin)).await {
        // Refused by the auth layer (fail closed), before tonic could say UNIMPLEMENTED.
        Outcome::Answered(status) => assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{}",
            berth_common::client::describe_status(&status)
        ),
        other => panic!("expected PERMISSION_DENIED, got {other}"),
    }
    match call(&channel, &unknown, None).await {
        Outcome::Answered(status) => assert_eq!(status.code(), Code::Unauthenticated),
        other => panic!("expected UNAUTHENTICATED, got {other}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_needs_no_token() {
    let server = TestServer::start().await;
    let response = HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check without a token")
        .into_inner();
    assert_eq!(response.status(), ServingStatus::Serving);

    // An open service ignores the token entirely: a bad one is no reason to refuse.
    let outcome = call(
        &server.channel().await,
        &Method {
            path: "/grpc.health.v1.Health/Check".to_owned(),
            streaming: false,
            doc: String::new(),
        },
        Some("Bearer berth_usr_garbage"),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Ok),
        "health check with a garbage token: {outcome}"
    );
    server.stop().await;
}

/// The parts of `grpc.reflection.v1(alpha).ServerReflectionRequest` this test sends. The
/// `list_services` field is a member of a oneof upstream; a plain field with the same tag
/// encodes identically when set.
#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionRequest {
    #[prost(string, tag = "7")]
    list_services: String,
}

/// The parts of `ServerReflectionResponse` this test reads.
#[derive(Clone, PartialEq, prost::Message)]
struct ReflectionResponse {
    #[prost(message, optional, tag = "6")]
    list_services_response: Option<ListServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListServiceResponse {
    #[prost(message, repeated, tag = "1")]
    service: Vec<ServiceResponse>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ServiceResponse {
    #[prost(string, tag = "1")]
    name: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_berth_services_without_a_token() {
    let server = TestServer::start().await;
    let channel = server.channel().await;
    for path in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("the channel is ready");
        let request = tonic::Request::new(tokio_stream::once(ReflectionRequest {
            list_services: "*".to_owned(),
        }));
        let mut stream = grpc
            .streaming(
                request,
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<ReflectionRequest, ReflectionResponse>::default(),
            )
            .await
            .unwrap_or_else(|status| panic!("{path} without a token: {status}"))
            .into_inner();
        let response = tokio::time::timeout(STREAM_SILENCE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer within {STREAM_SILENCE:?}"))
            .unwrap_or_else(|status| panic!("{path} without a token: {status}"))
            .unwrap_or_else(|| panic!("{path}: the stream ended without an answer"));
        let names: BTreeSet<String> = response
            .list_services_response
            .unwrap_or_else(|| panic!("{path}: the answer is not a service list"))
            .service
            .into_iter()
            .map(|s| s.name)
            .collect();
        for service in [
            "berth.v1.TokenService",
            "berth.v1.WorkerService",
            "berth.v1.WorkRequestService",
            "berth.v1.AgentService",
        ] {
            assert!(
                names.contains(service),
                "{path}: {service} not in {names:?}"
            );
        }
    }
    server.stop().await;
}
