//! Specs for the test image, the same for real and simulated workers.
//!
//! A simulated worker reads `command` as the test image's busybox would (see
//! [`crate::sim::script`]), so a spec built here means the same on both: `spec(&["sleep",
//! "300"])` keeps a slot busy, `sh("exit 3")` fails with code 3, either way.

use berth_common::proto::{ContainerSpec, PullPolicy};

use crate::TEST_IMAGE;

const MIB: u64 = 1024 * 1024;

/// A duration of `seconds` on the wire.
pub fn secs(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

/// `command` in the test image: never pulled (there is no registry), a two-second grace
/// period so a stop never waits long, and a modest memory limit.
pub fn spec(command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        image: TEST_IMAGE.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        pull_policy: PullPolicy::Never as i32,
        stop_grace_period: Some(secs(2)),
        memory_bytes: Some(128 * MIB),
        ..Default::default()
    }
}

/// `sh -c script` in the test image, as [`spec`].
pub fn sh(script: &str) -> ContainerSpec {
    spec(&["sh", "-c", script])
}
