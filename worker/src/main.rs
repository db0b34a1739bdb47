//! The `berth-worker` binary; everything is in the library.

fn main() -> std::process::ExitCode {
    berth_worker::cli::main()
}
