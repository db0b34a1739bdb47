//! The `berth` binary. Everything lives in the library (`berth_cli`) so tests can drive
//! the same code.

use std::process::ExitCode;

// One thread is plenty for a client that makes a few calls one after the other.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    berth_cli::run(std::env::args_os()).await
}
