//! Desired state (pipelines) -> what runs here. Standalone mode runs every pipeline in this process.

mod distributed;
mod launch;
mod standalone;
mod status;

pub use distributed::{Cluster, Membership, run_distributed};
pub use standalone::Standalone;
pub use status::{State, StatusBoard, TaskStatus};
