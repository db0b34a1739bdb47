//! The domain: work requests, their specs, lifecycle, scheduling, dependencies,
//! workflows, the queue and logs.

pub(crate) mod deps;
pub mod ids;
pub(crate) mod intake;
pub(crate) mod lifecycle;
pub(crate) mod limits;
pub mod logs;
pub(crate) mod own;
pub(crate) mod queue;
pub mod recorder;
pub mod report;
pub mod requests;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod workflow;
