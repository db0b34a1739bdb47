//! `berth-server`: the central gRPC server. It owns all state in PostgreSQL and decides
//! what runs where. See ARCHITECTURE.md for the code map; `main.rs` is a thin wrapper
//! over [`app::cli::main`] so tests can drive the same code.

pub mod access;
pub mod api;
pub mod app;
pub mod embedded_pg;
pub mod error;
pub mod fleet;
pub mod live;
pub mod store;
pub mod work;
