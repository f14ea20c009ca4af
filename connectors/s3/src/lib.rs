//! `s3-sink` and `s3-source`: archive topics to S3 and replay them.
//!
//! - [`S3SinkPlugin`] writes each topic partition into objects named
//!   `<topics_dir>/<topic>/<partition path>/<topic>+<partition>+<start offset>.<ext>` as JSON
//!   lines, Parquet or raw bytes (gzip/zstd, or Parquet's own codecs), partitioned by Kafka
//!   partition, value fields or time, rotated by record count, record time, wall-clock schedule
//!   or size, uploaded in multipart parts when large. Offsets are committed only after the
//!   objects are uploaded, and file boundaries depend only on the records, so a rewrite after a
//!   crash replaces objects instead of duplicating records.
//! - [`S3SourcePlugin`] replays such an archive into topics in offset order per partition.
//! - [`read_object`] decodes one archived object (used by the source; handy for tools).
//!
//! ```yaml
//! name: orders-archive
//! connector: s3-sink
//! config:
//!   bucket: archive
//!   topics: [orders]
//!   format: parquet
//!   compression: zstd
//!   flush_size: 100000
//! key_converter: { type: bytes }
//! value_converter: { type: bytes }
//! ```

mod config;
mod error;
mod format;
mod partition;
mod sink;
mod source;
mod store;

use sluice_connector_api::Registry;

pub use config::{
    Compression, Connection, Format, PartitionerKind, SinkConfig, SourceConfig, TimestampSource,
};
pub use error::{Error, Result};
pub use format::{ArchivedRecord, read_object};
pub use partition::PathFormat;
pub use sink::S3SinkPlugin;
pub use source::S3SourcePlugin;

/// Registers `s3-sink` and `s3-source`.
pub fn register(registry: &mut Registry) {
    registry.add_sink(S3SinkPlugin);
    registry.add_source(S3SourcePlugin);
}
