//! The two task loops: source (poll -> convert -> produce -> store offsets -> commit) and sink
//! (consume -> convert -> put -> flush -> commit Kafka offsets).

mod acks;
mod errors;
mod offsets;
mod sink;
mod source;
mod topics;

pub(crate) use acks::{AckContext, AckWindow, SourceProducer};
pub(crate) use errors::{ErrorHandler, Failed, SinkReporter, Stage};
pub use errors::{ErrorPolicy, Tolerance, errors_spec};
pub(crate) use sink::{RETRY_START, SinkTaskRunner};
pub(crate) use source::SourceTaskRunner;
pub(crate) use topics::{TopicReport, TopicTracker};
