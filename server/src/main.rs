//! The `berth-server` binary; everything is in the library.

fn main() -> std::process::ExitCode {
    berth_server::app::cli::main()
}
