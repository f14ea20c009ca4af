//! Records as they cross the runtime.

use std::fmt;

use crate::schema::SchemaRef;
use crate::value::Value;

/// Where in an external system a source task reads from, e.g. `{"filename": "/var/log/app.log"}`.
/// Kept as a small JSON map so it can be stored in an offsets file or topic as Kafka Connect does.
pub type SourcePartition = serde_json::Map<String, serde_json::Value>;

/// How far a source task has read within a [`SourcePartition`], e.g. `{"position": 1024}`.
pub type SourceOffset = serde_json::Map<String, serde_json::Value>;

/// A record header. Values are raw bytes, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

impl Header {
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record produced by a source task, before conversion to bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub topic: String,
    /// Kafka partition; `None` lets the producer's partitioner choose from the key.
    pub partition: Option<i32>,
    pub key_schema: Option<SchemaRef>,
    pub key: Value,
    pub value_schema: Option<SchemaRef>,
    pub value: Value,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` means the time it is produced.
    pub timestamp: Option<i64>,
    pub source_partition: SourcePartition,
    pub source_offset: SourceOffset,
}

impl SourceRecord {
    /// A record with a value only; set the other fields directly.
    pub fn new(
        topic: impl Into<String>,
        value_schema: Option<SchemaRef>,
        value: Value,
        source_partition: SourcePartition,
        source_offset: SourceOffset,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key_schema: None,
            key: Value::Null,
            value_schema,
            value,
            headers: Vec::new(),
            timestamp: None,
            source_partition,
            source_offset,
        }
    }

    pub fn with_key(mut self, key_schema: Option<SchemaRef>, key: Value) -> Self {
        self.key_schema = key_schema;
        self.key = key;
        self
    }
}

/// A Kafka topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record consumed from Kafka and handed to a sink task, after conversion from bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key_schema: Option<SchemaRef>,
    pub key: Value,
    pub value_schema: Option<SchemaRef>,
    pub value: Value,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch, when the broker reported one.
    pub timestamp: Option<i64>,
}

impl SinkRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}
