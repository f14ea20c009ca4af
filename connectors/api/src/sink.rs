//! Sink connectors: Kafka topics -> an external system.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::Result;
use crate::record::{SinkRecord, TopicPartition};
use crate::spec::ConnectorConfig;

/// What the runtime gives a sink task at start.
#[derive(Debug, Clone)]
pub struct SinkTaskContext {
    pub connector: String,
    pub task_id: u32,
}

/// A configured sink connector; it splits its work into task configs.
#[async_trait]
pub trait SinkConnector: Send + Sync {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()>;

    /// At most `max_tasks` task configurations (at least one). Sink tasks share one consumer
    /// group, so the usual answer is `max_tasks` copies of the connector config.
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>>;

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Writes records to an external system.
///
/// Contract:
/// - Delivery is at least once: after a crash or rebalance, records after the last committed
///   Kafka offset are delivered again, so sinks must tolerate duplicates unless they say otherwise.
/// - Records of one topic partition arrive in offset order. Methods are never called concurrently.
/// - `put` may buffer. `flush` receives, per partition, the offset of the next record to be read
///   (last delivered + 1) and returns the offsets that are durable downstream and may be committed
///   to Kafka; a sink that holds data back (an S3 file not yet rotated) returns less.
/// - `open`/`close` bracket the partitions assigned to this task; `close` must not lose buffered data
///   silently: data not flushed by then is delivered again to the partition's next owner.
#[async_trait]
pub trait SinkTask: Send + Sync {
    async fn start(&mut self, ctx: SinkTaskContext, config: &ConnectorConfig) -> Result<()>;

    async fn open(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<()>;

    /// Makes what was `put` durable and returns the offsets that may be committed.
    async fn flush(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<HashMap<TopicPartition, i64>>;

    async fn close(&mut self, _partitions: &[TopicPartition]) -> Result<()> {
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}
