//! `file-source` and `file-sink`.
//!
//! - `file-source` turns each line of a file into a string record and keeps following the file
//!   as lines are appended. Its source offset is the byte position after the last line produced,
//!   so a restart continues after the last committed line. A trailing line without its newline
//!   is held back until the newline arrives.
//! - `file-sink` appends one line per record: the value as text (`format: value`), or a JSON
//!   object with topic, partition, offset, timestamp, key and value (`format: record`). `flush`
//!   fsyncs the file before the runtime commits the Kafka offsets, so nothing committed is lost.
//!   On start it cuts a partial last line (a crash in the middle of a write) back to the last
//!   newline: that record was not committed, so it is written again whole.

mod config;
mod sink;
mod source;

use sluice_connector_api::Registry;

pub use config::{FileSinkConfig, FileSourceConfig, SinkFormat};
pub use sink::FileSinkPlugin;
pub use source::FileSourcePlugin;

/// Registers `file-source` and `file-sink`.
pub fn register(registry: &mut Registry) {
    registry.add_source(FileSourcePlugin);
    registry.add_sink(FileSinkPlugin);
}
