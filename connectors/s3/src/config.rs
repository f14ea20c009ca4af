//! Configuration of `s3-sink` and `s3-source`: the field specs (validated by the runtime, named in
//! every error) and the typed structs the tasks parse them into.

use std::collections::BTreeMap;

use serde::Deserialize;
pub use sluice_connector_api::Secret;
use sluice_connector_api::{ConfigSpec, FieldKind, Validator};

pub(crate) const DEFAULT_REGION: &str = "us-east-1";
pub(crate) const DEFAULT_TOPICS_DIR: &str = "topics";
pub(crate) const DEFAULT_FLUSH_SIZE: i64 = 10_000;
pub(crate) const DEFAULT_PART_SIZE: i64 = 16 * 1024 * 1024;
/// S3 refuses multipart parts below 5 MiB (except the last).
pub(crate) const MIN_PART_SIZE: i64 = 5 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_RETRIES: i64 = 10;
pub(crate) const DEFAULT_RETRY_BACKOFF_MS: i64 = 200;
pub(crate) const DEFAULT_RETRY_MAX_BACKOFF_MS: i64 = 10_000;
pub(crate) const DEFAULT_PATH_FORMAT: &str = "'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH";
pub(crate) const DEFAULT_POLL_INTERVAL_MS: i64 = 5_000;
pub(crate) const DEFAULT_SOURCE_BATCH: i64 = 1_000;

/// Where the archive lives and how to reach it; shared by the sink and the source.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Connection {
    /// Bucket holding the archive.
    pub bucket: String,
    /// AWS region (also used for request signing with S3-compatible servers).
    pub region: String,
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.
    pub path_style: bool,
    /// Access key id; without it the standard AWS credential chain is used.
    pub access_key_id: Option<String>,
    /// Secret access key (secret; never logged).
    pub secret_access_key: Option<Secret>,
    /// Prefix under which topics are archived.
    pub topics_dir: String,
    /// Retries of one S3 request by the SDK after its first attempt.
    pub max_retries: u32,
    /// Base of the SDK's jittered exponential backoff (milliseconds).
    pub retry_backoff: u64,
    /// Longest wait between attempts (milliseconds).
    pub retry_max_backoff: u64,
}

/// The archive's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line with topic, partition, offset, timestamp, headers, key and value.
    Json,
    /// Parquet with one row per record; the value's columns derive from its schema.
    Parquet,
    /// The raw value bytes of each record followed by a newline (values only).
    Bytes,
}

/// Compression of an archive file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Parquet only.
    Snappy,
}

/// How records are grouped into directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionerKind {
    /// `<topics_dir>/<topic>/partition=<p>/`
    Default,
    /// `<topics_dir>/<topic>/<field>=<value>/...` from fields of the record value.
    Field,
    /// `<topics_dir>/<topic>/<path_format applied to a time>/`
    Time,
}

/// Which time the time partitioner formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// The record's Kafka timestamp (deterministic: a rewrite lands in the same place).
    Record,
    /// The worker's clock when the record is written.
    Wallclock,
}

/// Configuration of `s3-sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct SinkConfig {
    #[serde(flatten)]
    pub connection: Connection,
    /// Topics to archive.
    pub topics: Vec<String>,
    pub format: Format,
    pub compression: Compression,
    pub partitioner: PartitionerKind,
    /// Value fields the `field` partitioner groups by.
    pub partition_fields: Vec<String>,
    /// Directory layout of the `time` partitioner.
    pub path_format: String,
    /// IANA time zone of the `time` partitioner and of `rotate_schedule_interval`.
    pub timezone: String,
    pub timestamp_source: TimestampSource,
    /// Records per topic partition after which files are closed and uploaded.
    pub flush_size: u64,
    /// Close files once a record's time is this far past the first record's (ms; 0 = off).
    pub rotate_interval: u64,
    /// Close files at every multiple of this wall-clock interval (ms; 0 = off).
    pub rotate_schedule_interval: u64,
    /// Close a file once its uncompressed content reaches this many bytes (0 = off).
    pub max_file_bytes: u64,
    /// Multipart upload part size in bytes; also bounds the memory of each open file.
    pub part_size: u64,
}

/// Configuration of `s3-source`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct SourceConfig {
    #[serde(flatten)]
    pub connection: Connection,
    /// Archived topics to replay.
    pub topics: Vec<String>,
    /// Archived topic -> topic to produce into (topics not listed keep their name).
    pub topic_mapping: BTreeMap<String, String>,
    /// How often the archive is listed again for new objects (ms).
    pub poll_interval: u64,
    /// Most records one poll returns.
    pub batch_size: usize,
    /// This task's share of the topic partitions (set by the connector).
    #[serde(default)]
    pub task_index: u32,
    #[serde(default = "one")]
    pub task_count: u32,
}

fn one() -> u32 {
    1
}

fn connection_spec(spec: ConfigSpec) -> ConfigSpec {
    spec.required("bucket", FieldKind::String, "Bucket holding the archive.")
        .check(Validator::NonEmpty)
        .optional(
            "region",
            FieldKind::String,
            DEFAULT_REGION,
            "AWS region (also signs requests to S3-compatible servers).",
        )
        .maybe(
            "endpoint",
            FieldKind::String,
            "Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`; unset for AWS.",
        )
        .check(Validator::Custom(std::sync::Arc::new(|v| {
            match v.as_str() {
                Some(s) if s.starts_with("http://") || s.starts_with("https://") => Ok(()),
                _ => Err(format!("expected a URL starting with http:// or https://, got {v}")),
            }
        })))
        .optional(
            "path_style",
            FieldKind::Bool,
            false,
            "Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers.",
        )
        .maybe(
            "access_key_id",
            FieldKind::String,
            "Access key id. Unset: the standard AWS credential chain (environment, profile, web identity, ECS, instance metadata).",
        )
        .maybe(
            "secret_access_key",
            FieldKind::String,
            "Secret access key, with `access_key_id`.",
        )
        .secret()
        .optional(
            "topics_dir",
            FieldKind::String,
            DEFAULT_TOPICS_DIR,
            "Prefix under which topics are archived (`<topics_dir>/<topic>/...`).",
        )
        .check(Validator::NonEmpty)
        .optional(
            "max_retries",
            FieldKind::Int,
            DEFAULT_MAX_RETRIES,
            "Retries of one S3 request (server errors, throttling, timeouts, connection failures) by the AWS SDK's standard retry strategy. A request still failing then is not a crash: the sink drops what is not durable, the partition is consumed again from there, and the task retries with backoff for as long as `errors.retry_timeout` allows (by default until S3 is back), without a restart.",
        )
        .check(Validator::range(0, 1000))
        .optional(
            "retry_backoff",
            FieldKind::Duration,
            DEFAULT_RETRY_BACKOFF_MS,
            "Base of the SDK's jittered exponential backoff: the n-th retry waits a random time up to this times 2^(n-1).",
        )
        .optional(
            "retry_max_backoff",
            FieldKind::Duration,
            DEFAULT_RETRY_MAX_BACKOFF_MS,
            "Longest wait between retries.",
        )
}

pub(crate) fn sink_spec() -> ConfigSpec {
    connection_spec(ConfigSpec::new())
        .required("topics", FieldKind::List, "Topics to archive.")
        .check(Validator::NonEmpty)
        .optional(
            "format",
            FieldKind::String,
            "json",
            "File format: `json` (one JSON object per line with topic, partition, offset, timestamp, headers, key, value), `parquet` (value columns derived from the record schema; schemaless values as a JSON string column) or `bytes` (raw value bytes, one per line).",
        )
        .check(Validator::one_of(["json", "parquet", "bytes"]))
        .optional(
            "compression",
            FieldKind::String,
            "none",
            "`none`, `gzip` or `zstd`; Parquet also `snappy` (Parquet compresses inside the file).",
        )
        .check(Validator::one_of(["none", "gzip", "zstd", "snappy"]))
        .optional(
            "partitioner",
            FieldKind::String,
            "default",
            "Directory layout: `default` (`partition=<p>`), `field` (`<field>=<value>` from `partition_fields`) or `time` (`path_format`).",
        )
        .check(Validator::one_of(["default", "field", "time"]))
        .optional(
            "partition_fields",
            FieldKind::List,
            serde_json::json!([]),
            "Fields of the record value the `field` partitioner groups by.",
        )
        .optional(
            "path_format",
            FieldKind::String,
            DEFAULT_PATH_FORMAT,
            "Directory layout of the `time` partitioner: `YYYY`, `MM`, `dd`, `HH`, `mm`, `ss`, and literal text in single quotes.",
        )
        .check(Validator::NonEmpty)
        .optional(
            "timezone",
            FieldKind::String,
            "UTC",
            "IANA time zone (e.g. `Europe/Berlin`) of the `time` partitioner and of `rotate_schedule_interval`.",
        )
        .check(Validator::Custom(std::sync::Arc::new(|v| {
            match v.as_str().map(str::parse::<chrono_tz::Tz>) {
                Some(Ok(_)) => Ok(()),
                _ => Err(format!("expected an IANA time zone such as UTC or Europe/Berlin, got {v}")),
            }
        })))
        .optional(
            "timestamp_source",
            FieldKind::String,
            "record",
            "Time the `time` partitioner formats: `record` (the Kafka timestamp) or `wallclock`.",
        )
        .check(Validator::one_of(["record", "wallclock"]))
        .optional(
            "flush_size",
            FieldKind::Int,
            DEFAULT_FLUSH_SIZE,
            "Records per topic partition after which its files are closed and uploaded.",
        )
        .check(Validator::min(1))
        .optional(
            "rotate_interval",
            FieldKind::Duration,
            0,
            "Close a topic partition's files when a record's timestamp is this far past the first one's (0 = off). Deterministic.",
        )
        .optional(
            "rotate_schedule_interval",
            FieldKind::Duration,
            0,
            "Close open files at every multiple of this wall-clock interval, so quiet partitions still upload (0 = off). Exactly once still: a set's objects become visible only once the offsets before it are committed.",
        )
        .optional(
            "max_file_bytes",
            FieldKind::Int,
            0,
            "Close a topic partition's files when one reaches this many uncompressed bytes (0 = off).",
        )
        .check(Validator::min(0))
        .optional(
            "part_size",
            FieldKind::Int,
            DEFAULT_PART_SIZE,
            "Multipart upload part size in bytes (at least 5 MiB); also bounds the memory each open file holds.",
        )
        .check(Validator::range(MIN_PART_SIZE, 5 * 1024 * 1024 * 1024))
}

pub(crate) fn source_spec() -> ConfigSpec {
    connection_spec(ConfigSpec::new())
        .required(
            "topics",
            FieldKind::List,
            "Archived topics to replay (as `s3-sink` wrote them under `topics_dir`).",
        )
        .check(Validator::NonEmpty)
        .optional(
            "topic_mapping",
            FieldKind::Map,
            serde_json::json!({}),
            "Archived topic -> topic to produce into; topics not listed keep their name.",
        )
        .optional(
            "poll_interval",
            FieldKind::Duration,
            DEFAULT_POLL_INTERVAL_MS,
            "How often the archive is listed again for new objects once everything is replayed.",
        )
        .optional(
            "batch_size",
            FieldKind::Int,
            DEFAULT_SOURCE_BATCH,
            "Most records one poll returns.",
        )
        .check(Validator::range(1, 100_000))
        .maybe(
            "task_index",
            FieldKind::Int,
            "Set by the connector: this task's share.",
        )
        .maybe(
            "task_count",
            FieldKind::Int,
            "Set by the connector: number of tasks.",
        )
}

impl SinkConfig {
    /// Checks that the fields fit together; errors name the fields.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.compression == Compression::Snappy && self.format != Format::Parquet {
            return Err(
                "config.compression: `snappy` is for format `parquet`; expected none, gzip or zstd"
                    .into(),
            );
        }
        if self.partitioner == PartitionerKind::Field && self.partition_fields.is_empty() {
            return Err(
                "config.partition_fields: the `field` partitioner needs at least one field".into(),
            );
        }
        if self.partitioner == PartitionerKind::Time {
            crate::partition::PathFormat::parse(&self.path_format)
                .map_err(|e| format!("config.path_format: {e}"))?;
        }
        check_credentials(&self.connection)
    }
}

pub(crate) fn check_credentials(c: &Connection) -> Result<(), String> {
    match (&c.access_key_id, &c.secret_access_key) {
        (Some(_), None) => Err("config.secret_access_key: required with access_key_id".into()),
        (None, Some(_)) => Err("config.access_key_id: required with secret_access_key".into()),
        _ => Ok(()),
    }
}
