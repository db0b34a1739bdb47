//! `berth-server`: the central gRPC server. It owns all state in PostgreSQL and decides
//! what runs where. The domain and the store are the `berth-core` crate; this crate
//! starts them up and serves them:
//!
//! - [`app`]: the command line, configuration, start-up and graceful shutdown.
//! - [`api`]: the gRPC services, the only code that knows tonic and the generated
//!   protocol.
//! - [`web`]: the dashboard, HTML pages under `/ui/` on the same listener.
//! - [`observe`]: `/healthz`, `/readyz`, metrics and traces for operators.
//!
//! See ARCHITECTURE.md for the code map; `main.rs` is a thin wrapper over
//! [`app::cli::main`] so tests can drive the same code.

pub mod api;
pub mod app;
pub mod observe;
pub mod web;
