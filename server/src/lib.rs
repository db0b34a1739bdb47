//! `berth-server`: the central gRPC server. It owns all state in PostgreSQL and decides
//! what runs where. See ARCHITECTURE.md for the code map; `main.rs` is a thin wrapper
//! over [`cli::main`] so tests can drive the same code.

pub mod app;
pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod db;
pub mod deps;
pub mod embedded_pg;
pub mod error;
pub mod hub;
pub mod intake;
pub mod leases;
pub mod logstore;
pub mod models;
pub mod notify;
pub mod queue;
pub mod recorder;
pub mod rpc;
pub mod scheduler;
pub mod schema;
pub mod secrets;
pub mod validate;
pub mod workflow;
