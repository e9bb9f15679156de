//! The measurements of a run, one module each.

pub mod ceilings;
pub mod drain;
pub mod latency;
pub mod producer;
pub mod sweep;
