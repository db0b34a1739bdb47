//! `berth-worker`: the daemon on a build host. It holds one stream to the server, runs
//! each assigned attempt as a Docker container, and sends its output and result back.
//! `main.rs` is a thin wrapper over [`cli::main`].

pub mod agent;
pub mod cli;
pub mod config;
pub mod executor;
pub mod inputs;
pub mod logs;
pub mod mask;
pub mod metrics;
pub mod outputs;
pub mod reaper;
