//! The domain: work requests, their specs, lifecycle, scheduling, dependencies,
//! workflows, the queue and logs.

pub mod deps;
pub mod ids;
pub mod intake;
pub mod lifecycle;
pub mod logs;
pub mod queue;
pub mod recorder;
pub mod report;
pub mod requests;
pub mod scheduler;
pub mod spec;
pub mod state;
pub mod workflow;
