//! The two task loops: source (poll -> convert -> produce -> store offsets -> commit) and sink
//! (consume -> convert -> put -> flush -> commit Kafka offsets).

mod offsets;
mod sink;
mod source;
mod topics;

pub(crate) use sink::SinkTaskRunner;
pub(crate) use source::SourceTaskRunner;
pub(crate) use topics::{TopicReport, TopicTracker};
