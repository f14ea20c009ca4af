use std::path::PathBuf;

use serde::Deserialize;
use sluice_connector_api::{ConfigSpec, FieldKind, Validator};

pub(crate) const DEFAULT_BATCH_SIZE: i64 = 2000;
pub(crate) const DEFAULT_POLL_INTERVAL_MS: i64 = 200;

/// Configuration of `file-source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileSourceConfig {
    /// Path of the file to read.
    pub file: PathBuf,
    /// Topic the lines go to.
    pub topic: String,
    /// Most lines one poll returns.
    pub batch_size: usize,
    /// How long to wait at the end of the file before looking for new lines (milliseconds).
    pub poll_interval: u64,
}

pub(crate) fn source_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("file", FieldKind::String, "Path of the file to read.")
        .check(Validator::NonEmpty)
        .local_path()
        .required("topic", FieldKind::String, "Topic the lines go to.")
        .check(Validator::NonEmpty)
        .optional(
            "batch_size",
            FieldKind::Int,
            DEFAULT_BATCH_SIZE,
            "Most lines one poll returns.",
        )
        .check(Validator::range(1, 1_000_000))
        .optional(
            "poll_interval",
            FieldKind::Duration,
            DEFAULT_POLL_INTERVAL_MS,
            "How long to wait at the end of the file before looking for new lines.",
        )
}

/// What `file-sink` writes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkFormat {
    /// The value as text: strings as they are, other values as JSON.
    Value,
    /// A JSON object with topic, partition, offset, timestamp, key and value.
    Record,
}

/// Configuration of `file-sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct FileSinkConfig {
    /// Path of the file to append to (created if missing).
    pub file: PathBuf,
    /// Topics to read.
    pub topics: Vec<String>,
    /// What each line holds.
    pub format: SinkFormat,
}

pub(crate) fn sink_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("file", FieldKind::String, "Path of the file to append to (created if missing).")
        .check(Validator::NonEmpty)
        .local_path()
        .required("topics", FieldKind::List, "Topics to read.")
        .check(Validator::NonEmpty)
        .optional(
            "format",
            FieldKind::String,
            "value",
            "What each line holds: `value` (the value as text) or `record` (JSON with topic, partition, offset, timestamp, key, value).",
        )
        .check(Validator::one_of(["value", "record"]))
}
