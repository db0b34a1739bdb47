//! The files in `deploy/` are proven here, not only written: the Helm chart lints and
//! renders objects that pass the Kubernetes schemas (helm and kubernetes-validate from PyPI,
//! pinned by hash), so do the plain manifests; the systemd units pass `systemd-analyze
//! verify`; the image builds from a base made here (no registry) and its server starts
//! against PostgreSQL and answers `/readyz` and the dashboard; the compose file names what
//! the image needs.

#![expect(
    clippy::unwrap_used,
    reason = "integration tests: an unexpected failure should fail the test"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_tests::{binary, free_port, fresh_database};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs a command to its end; panics with its output when it fails. Returns stdout and
/// stderr.
fn run(what: &str, command: &mut Command) -> (String, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({command:?}): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// The bin dir of the venv with helm and kubernetes-validate (installed on first use).
fn deploy_tools() -> PathBuf {
    let (stdout, _) = run(
        "scripts/install-deploy-check",
        &mut Command::new(repo().join("scripts/install-deploy-check")),
    );
    PathBuf::from(stdout.trim())
}

#[test]
fn helm_chart_lints_and_renders_objects_that_pass_the_kubernetes_schemas() {
    let tools = deploy_tools();
    let chart = repo().join("deploy/helm/berth");
    run(
        "helm lint",
        Command::new(tools.join("helm"))
            .args(["lint", "--strict"])
            .arg(&chart),
    );
    let (rendered, _) = run(
        "helm template",
        Command::new(tools.join("helm"))
            .args(["template", "berth"])
            .arg(&chart)
            .args([
                "--set",
                "server.replicas=3",
                "--set",
                "worker.labels.arch=amd64",
                "--set",
                "tracing.otlpEndpoint=http://otel-collector:4317",
            ]),
    );
    // What Berth relies on is in the rendered objects.
    for needle in [
        "kind: Deployment",
        "replicas: 3",
        "kind: DaemonSet",
        "kind: Service",
        "BERTH_DATABASE_URL",
        "secretKeyRef",
        "BERTH_SECRET_KEY_FILE",
        "path: /readyz",
        "path: /healthz",
        "/var/run/docker.sock",
        "--label=arch=amd64",
        "BERTH_TOKEN_FILE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(
            rendered.contains(needle),
            "the chart renders no {needle:?}:\n{rendered}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let manifests = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"));
    let (out, err) = run(
        "kubernetes-validate",
        Command::new(tools.join("kubernetes-validate"))
            .arg("--strict")
            .arg(&file)
            .args(manifests),
    );
    assert!(!format!("{out}{err}").contains("ERROR"), "{out}\n{err}");
    // The check can fail: a wrong field type is refused.
    std::fs::write(
        &file,
        rendered.replacen("replicas: 3", "replicas: three", 1),
    )
    .unwrap();
    let refused = Command::new(tools.join("kubernetes-validate"))
        .arg("--strict")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a broken manifest passed the schema check"
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    assert!(
        analyze.exists(),
        "systemd-analyze is missing; install it: apt-get install systemd"
    );
    // The units name the installed binaries; here they point at the ones just built.
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = binary("berth-server").parent().unwrap().to_owned();
    let mut units = Vec::new();
    for name in ["berth-server.service", "berth-worker.service"] {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(name)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/"),
            "{name} starts no installed binary"
        );
        let local = text.replace("/usr/local/bin/", &format!("{}/", bin_dir.display()));
        let path = dir.path().join(name);
        std::fs::write(&path, local).unwrap();
        units.push(path);
    }
    let server = std::fs::read_to_string(&units[0]).unwrap();
    assert!(
        server.contains("Type=notify"),
        "the server unit waits for READY=1"
    );
    let (out, err) = run(
        "systemd-analyze verify",
        Command::new(analyze).arg("verify").args(&units),
    );
    // Warnings (an unknown key, a bad value) are printed but do not fail the command.
    let complaints: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|line| line.contains(".service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complains:\n{out}\n{err}"
    );
}

#[test]
fn compose_file_runs_the_image_against_its_postgres_with_the_readiness_check() {
    let text = std::fs::read_to_string(repo().join("deploy/compose/docker-compose.yml")).unwrap();
    let compose: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let server = &compose["services"]["server"];
    assert_eq!(server["image"], "berth:latest");
    assert!(
        server["environment"]["BERTH_DATABASE_URL"]
            .as_str()
            .unwrap()
            .contains("@postgres:5432/"),
        "the server reaches the compose PostgreSQL"
    );
    assert_eq!(
        server["depends_on"]["postgres"]["condition"], "service_healthy",
        "the server waits for PostgreSQL"
    );
    let check = server["healthcheck"]["test"].to_string();
    assert!(
        check.contains("/readyz"),
        "the health check asks /readyz: {check}"
    );
    assert!(
        compose["services"]["postgres"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_builds_without_a_registry_and_its_server_serves_readyz_and_the_dashboard() {
    let bin_dir = binary("berth-server").parent().unwrap().to_owned();
    let tag = format!("berth-test-image:{}", std::process::id());
    let base = format!("berth-test-base:{}", std::process::id());
    run(
        "deploy/build-image",
        Command::new(repo().join("deploy/build-image"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .args(["--tag", &tag, "--base-tag", &base]),
    );
    // The server in the image against the test PostgreSQL: its socket directory is mounted
    // at the same path, and the container shares the host's network for the port. The
    // directory is the cluster owner's alone, so the container runs as that user, with its
    // data directory in /tmp.
    let url = fresh_database().await;
    let socket_dir = url
        .split("host=")
        .nth(1)
        .map(|rest| rest.split('&').next().unwrap().to_owned())
        .expect("the test database URL names its socket directory (host=...)");
    let owner = std::fs::metadata(&socket_dir)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let port = free_port();
    let name = format!("berth-test-image-{}", std::process::id());
    let (id, _) = run(
        "docker run",
        Command::new("docker").args([
            "run",
            "-d",
            "--name",
            &name,
            "--user",
            &owner.to_string(),
            "-e",
            "BERTH_DATA_DIR=/tmp/berth",
            "--network",
            "host",
            "-v",
            &format!("{socket_dir}:{socket_dir}"),
            "-e",
            &format!("BERTH_DATABASE_URL={url}"),
            "-e",
            &format!("BERTH_LISTEN=127.0.0.1:{port}"),
            &tag,
        ]),
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut ready = false;
    while !ready && tokio::time::Instant::now() < deadline {
        let answer = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        ready = answer.is_ok_and(|a| a.status() == 200);
        if !ready {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let login = if ready {
        http.get(format!("http://127.0.0.1:{port}/ui/login"))
            .send()
            .await
            .map(|answer| answer.status().as_u16())
            .ok()
    } else {
        None
    };
    let logs = Command::new("docker")
        .args(["logs", id.trim()])
        .output()
        .unwrap();
    run(
        "docker rm",
        Command::new("docker").args(["rm", "-f", &name]),
    );
    let _ = Command::new("docker")
        .args(["rmi", "-f", &tag, &base])
        .output();
    let log = String::from_utf8_lossy(&logs.stderr);
    assert!(
        ready,
        "the server in the image never answered /readyz with 200; its log:\n{log}"
    );
    assert_eq!(
        login,
        Some(200),
        "the dashboard's sign-in page; the server's log:\n{log}"
    );
}
