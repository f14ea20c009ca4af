//! Desired state (connector configs) -> what runs on this worker. One herder serves both modes:
//! distributed (group membership, internal topics) and standalone (one member, memory, a file).

mod launch;
mod worker;

pub use worker::{Cluster, Membership, Mode, run_herder};
