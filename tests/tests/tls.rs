//! gRPC over TLS: the server presents a certificate from a private CA, and only clients
//! that trust that CA get through.
//!
//! Each test makes its own CA and a server certificate for `localhost` and 127.0.0.1 with
//! rcgen, so nothing depends on files outside the test.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_common::client::BearerAuth;
use berth_common::proto::ListTokensRequest;
use berth_common::proto::token_service_client::TokenServiceClient;
use berth_tests::{
    TestServer, binary, free_port, fresh_database, health, run_binary, single_error_line,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic_health::pb::health_check_response::ServingStatus;

/// A private CA and a server certificate it signed, as PEM files.
struct Pki {
    _dir: tempfile::TempDir,
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

fn make_pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Berth test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = params.signed_by(&server_key, &issuer).unwrap();

    let ca_cert = dir.path().join("ca.pem");
    let server_cert = dir.path().join("server.pem");
    let server_key_path = dir.path().join("server.key");
    std::fs::write(&ca_cert, ca.pem()).unwrap();
    std::fs::write(&server_cert, server.pem()).unwrap();
    std::fs::write(&server_key_path, server_key.serialize_pem()).unwrap();
    Pki {
        _dir: dir,
        ca_cert,
        server_cert,
        server_key: server_key_path,
    }
}

/// Starts an in-process server serving TLS with `pki`'s certificate.
async fn tls_server(pki: &Pki) -> TestServer {
    let cert = pki.server_cert.clone();
    let key = pki.server_key.clone();
    TestServer::start_with(move |config| config.tls = Some((cert, key))).await
}

/// The port of a `TestServer` (its `url` is always `http://127.0.0.1:PORT`).
fn port_of(server: &TestServer) -> u16 {
    server.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// An error and all of its causes, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Connects to `url` and lists tokens with `token`; any failure, at connect or call time,
/// comes back as its full cause chain.
async fn list_tokens_via(url: &str, ca_cert: Option<&Path>, token: &str) -> Result<usize, String> {
    let attempt = async {
        let channel = berth_common::client::connect(url, ca_cert)
            .await
            .map_err(|e| chain(&e))?;
        let tokens = TokenServiceClient::with_interceptor(channel, BearerAuth::new(token))
            .list_tokens(ListTokensRequest {})
            .await
            .map_err(|status| chain(&status))?
            .into_inner()
            .tokens;
        Ok(tokens.len())
    };
    tokio::time::timeout(Duration::from_secs(60), attempt)
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} neither succeeded nor failed in 60 s"))
}

#[tokio::test(flavor = "multi_thread")]
async fn client_trusting_the_ca_lists_tokens_over_tls() {
    let pki = make_pki();
    let server = tls_server(&pki).await;
    let url = format!("https://localhost:{}", port_of(&server));
    let count = list_tokens_via(&url, Some(&pki.ca_cert), &server.admin_token)
        .await
        .expect("a client trusting the CA gets through");
    assert_eq!(count, 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_without_the_ca_is_refused_with_a_certificate_error() {
    let pki = make_pki();
    let server = tls_server(&pki).await;
    let url = format!("https://localhost:{}", port_of(&server));
    let error = list_tokens_via(&url, None, &server.admin_token)
        .await
        .expect_err("a client that does not trust the CA must not get through");
    assert!(
        error.to_lowercase().contains("certificate"),
        "the error does not mention the certificate: {error}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_client_cannot_call_a_tls_server() {
    let pki = make_pki();
    let server = tls_server(&pki).await;
    let url = format!("http://localhost:{}", port_of(&server));
    let result = list_tokens_via(&url, None, &server.admin_token).await;
    assert!(
        result.is_err(),
        "a plaintext client listed tokens on a TLS server"
    );
    // The server is unharmed by the bad client.
    let tls_url = format!("https://localhost:{}", port_of(&server));
    list_tokens_via(&tls_url, Some(&pki.ca_cert), &server.admin_token)
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn berth_cli_with_ca_cert_lists_tokens_over_tls() {
    let pki = make_pki();
    let server = tls_server(&pki).await;
    let url = format!("https://localhost:{}", port_of(&server));
    let token_file = server.data_dir.path().join("admin.token");
    let token_file = token_file.to_str().unwrap();
    let ca = pki.ca_cert.to_str().unwrap();

    let (code, stdout, stderr) = run_binary(
        "berth",
        &[
            "--server",
            &url,
            "--ca-cert",
            ca,
            "--token-file",
            token_file,
            "-o",
            "json",
            "token",
            "list",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "berth token list failed; stderr:\n{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("`-o json` output is not JSON ({e}): {stdout}"));
    assert!(
        listed.to_string().contains("\"admin\""),
        "the admin token is not listed: {stdout}"
    );

    let (code, _, stderr) = run_binary(
        "berth",
        &[
            "--server",
            &url,
            "--token-file",
            token_file,
            "token",
            "list",
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0, "the CLI trusted a certificate from an unknown CA");
    assert!(
        stderr.starts_with("error: ") && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_process_serves_tls_with_cert_and_key_flags() {
    let pki = make_pki();
    let database_url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let port = free_port();
    let stderr_path = tmp.path().join("stderr");
    let mut child = tokio::process::Command::new(binary("berth-server"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &database_url,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            pki.server_key.to_str().unwrap(),
        ])
        .env_remove("BERTH_LISTEN")
        .env_remove("BERTH_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap();

    let url = format!("https://localhost:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("berth-server exited ({status}); stderr:\n{}", stderr());
        }
        if health(&url, Some(&pki.ca_cert)).await == Some(ServingStatus::Serving) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "berth-server did not become healthy over TLS; stderr:\n{}",
            stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let admin_token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    let count = list_tokens_via(&url, Some(&pki.ca_cert), admin_token.trim())
        .await
        .unwrap();
    assert_eq!(count, 1);
    assert!(
        list_tokens_via(
            &format!("http://127.0.0.1:{port}"),
            None,
            admin_token.trim()
        )
        .await
        .is_err(),
        "the server also answered plaintext"
    );

    let pid = i32::try_from(child.id().unwrap()).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("berth-server exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", stderr());
}

/// Runs `berth-server` on a fresh database with `pki`'s certificate and `key` as its
/// TLS key, expecting it to refuse to start; returns its one error line. Nothing may have
/// been bootstrapped before the TLS files were checked.
async fn refused_tls_key(pki: &Pki, key: &Path) -> String {
    let database_url = fresh_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_binary(
        "berth-server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        !tmp.path().join("admin.token").exists(),
        "the server bootstrapped before it checked its TLS files"
    );
    single_error_line(&stderr).to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_tls_key_is_one_error_line() {
    let pki = make_pki();
    let tmp = tempfile::tempdir().unwrap();
    let missing_key = tmp.path().join("missing.key");
    let line = refused_tls_key(&pki, &missing_key).await;
    assert!(line.contains(missing_key.to_str().unwrap()), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_key_that_is_not_a_key_is_one_error_line() {
    let pki = make_pki();
    let tmp = tempfile::tempdir().unwrap();
    let bad_key = tmp.path().join("bad.key");
    std::fs::write(&bad_key, "this is not a private key\n").unwrap();
    let line = refused_tls_key(&pki, &bad_key).await;
    assert!(line.contains("TLS"), "{line}");
    assert!(
        line.contains("private key"),
        "the error does not say what is wrong: {line}"
    );
}
