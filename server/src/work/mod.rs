//! The domain: work requests, their specs, lifecycle, scheduling, dependencies,
//! workflows, the queue and logs.

pub mod deps;
pub mod intake;
pub mod logs;
pub mod queue;
pub mod recorder;
pub mod scheduler;
pub mod spec;
pub mod workflow;
