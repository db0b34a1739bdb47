//! Workers: their registry and the operators' view of them ([`workers`]), and a worker's
//! session with this replica ([`agents`]).

pub mod agents;
pub mod workers;
