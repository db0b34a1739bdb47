//! `berth-worker`: not ready yet. The worker daemon that connects to the server's
//! `AgentService.Connect` stream and runs work requests in Docker arrives with execution.

fn main() -> std::process::ExitCode {
    eprintln!(
        "berth-worker {}: not ready yet: this build of Berth cannot run work requests (protocol version {})",
        env!("CARGO_PKG_VERSION"),
        berth_common::PROTOCOL_VERSION
    );
    std::process::ExitCode::from(2)
}
