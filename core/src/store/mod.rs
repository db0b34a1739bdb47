//! The database: pool and migrations, schema, rows, and sealed secrets.

pub mod db;
pub mod models;
pub mod schema;
pub mod secrets;
