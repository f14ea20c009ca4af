//! Desired state (pipelines) -> what runs here. Standalone mode runs every pipeline in this process.

mod standalone;
mod status;

pub use standalone::Standalone;
pub use status::{State, StatusBoard, TaskStatus};
