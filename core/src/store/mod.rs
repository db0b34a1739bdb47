//! The database: pool and migrations, schema, rows, and sealed secrets.

pub mod db;
pub mod models;
pub(crate) mod schema;
pub mod secrets;
