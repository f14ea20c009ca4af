//! Where a worker keeps state. Standalone mode keeps source offsets in a local file.

mod config_topic;
mod log;
mod offset_file;
mod offset_topic;
mod status_topic;
mod topics;

use async_trait::async_trait;
use sluice_connector_api::{SourceOffset, SourcePartition};

pub use config_topic::{ConfigState, ConfigStore, RestartRequest, TargetState};
pub use offset_file::FileOffsetStore;
pub use offset_topic::TopicOffsetStore;
pub use status_topic::{RunState, Status, StatusStore};
pub(crate) use topics::{InternalTopic, ensure_internal_topics};

/// Why state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid offsets file: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("topic {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {topic} {message}")]
    Topic { topic: String, message: String },
    #[error("offset storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Committed source offsets, keyed as Kafka Connect keys its offsets topic:
/// `["<connector>", {source partition}]` -> `{source offset}`.
#[async_trait]
pub trait OffsetStore: Send + Sync {
    async fn get(
        &self,
        connector: &str,
        partition: &SourcePartition,
    ) -> Result<Option<SourceOffset>, StorageError>;

    /// Stores offsets; returns once they are durable.
    async fn put(
        &self,
        connector: &str,
        offsets: &[(SourcePartition, SourceOffset)],
    ) -> Result<(), StorageError>;

    /// Every stored (partition, offset) of a connector.
    async fn all(
        &self,
        connector: &str,
    ) -> Result<Vec<(SourcePartition, SourceOffset)>, StorageError>;

    /// Sets (`Some`) or deletes (`None`) offsets; returns once durable.
    async fn write(
        &self,
        connector: &str,
        changes: &[(SourcePartition, Option<SourceOffset>)],
    ) -> Result<(), StorageError>;

    /// Waits until offsets written elsewhere before this call are visible.
    async fn read_to_end(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

pub fn offset_key(connector: &str, partition: &SourcePartition) -> String {
    offset_key_json(connector, partition).to_string()
}

/// [`offset_key`] as a JSON value.
pub(crate) fn offset_key_json(connector: &str, partition: &SourcePartition) -> serde_json::Value {
    serde_json::Value::Array(vec![
        connector.into(),
        serde_json::Value::Object(partition.clone()),
    ])
}
