//! Docker, for the tests about execution: the test image, and what containers a worker
//! left on the host.

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::eventually;

/// The image execution tests run: `berth-test/busybox:latest`, built locally from the
/// static busybox binary (Debian's busybox-static) because no registry can be reached.
pub const TEST_IMAGE: &str = "berth-test/busybox:latest";

static IMAGE_READY: OnceCell<()> = OnceCell::const_new();

/// Runs `docker ARGS` and returns stdout; panics with Docker's message on failure.
pub async fn docker(args: &[&str]) -> String {
    let output = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run `docker`: {e}. These tests need a Docker engine and its CLI.")
        });
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Makes sure [`TEST_IMAGE`] exists, building it if needed.
pub async fn ensure_test_image() -> &'static str {
    IMAGE_READY
        .get_or_init(|| async {
            let present = tokio::process::Command::new("docker")
                .args(["image", "inspect", TEST_IMAGE])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot run `docker`: {e}. These tests need a Docker engine and its CLI.")
                })
                .success();
            if present {
                return;
            }
            let busybox = ["/bin/busybox", "/usr/bin/busybox"]
                .into_iter()
                .map(std::path::Path::new)
                .find(|p| p.exists())
                .expect("a static busybox is needed to build the test image: apt-get install busybox-static");
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
            std::fs::write(
                dir.path().join("Dockerfile"),
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\nCMD [\"sh\"]\n",
            )
            .unwrap();
            docker(&["build", "-q", "-t", TEST_IMAGE, dir.path().to_str().unwrap()]).await;
        })
        .await;
    TEST_IMAGE
}

/// Ids of containers labelled for `worker` (running or not).
pub async fn worker_containers(worker: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--filter",
        "label=berth.managed=true",
        "--filter",
        &format!("label=berth.worker={worker}"),
    ])
    .await
    .split_whitespace()
    .map(str::to_owned)
    .collect()
}

/// Whether a container with this id exists, running or not.
pub async fn container_exists(id: &str) -> bool {
    !docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("id={id}")])
        .await
        .trim()
        .is_empty()
}

/// Waits until no container labelled for `worker` is left on the host: "hosts never fill
/// up with dead containers" is a promise every execution scenario must keep.
pub async fn wait_no_containers(worker: &str) {
    eventually(
        &format!("no container of worker {worker} to remain"),
        Duration::from_secs(30),
        || async { worker_containers(worker).await.is_empty().then_some(()) },
    )
    .await;
}

/// Removes every container labelled for `worker` (running or not), ignoring failures.
pub fn remove_worker_containers(worker: &str) {
    let Ok(output) = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            "label=berth.managed=true",
            "--filter",
            &format!("label=berth.worker={worker}"),
        ])
        .stdin(Stdio::null())
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the containers of the named workers when dropped: a test that fails half-way
/// (or finds containers left, which is a failure) leaves the host clean for the next.
/// Declare it before the workers, so that it drops after them.
#[derive(Default)]
pub struct ContainerSweep(pub Vec<String>);

impl ContainerSweep {
    /// Adds a worker whose containers go too.
    pub fn add(&mut self, worker: &str) {
        self.0.push(worker.to_owned());
    }
}

impl Drop for ContainerSweep {
    fn drop(&mut self) {
        for worker in &self.0 {
            remove_worker_containers(worker);
        }
    }
}
