//! Source connectors: an external system -> Kafka topics.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::record::{SourceOffset, SourcePartition, SourceRecord};
use crate::spec::ConnectorConfig;

/// Reads the offsets the runtime has committed for one connector.
#[async_trait]
pub trait OffsetReader: Send + Sync {
    /// The last committed offset for `partition`, or `None` when nothing was committed yet.
    async fn offset(&self, partition: &SourcePartition) -> Result<Option<SourceOffset>>;
}

/// What the runtime gives a source task at start.
#[derive(Clone)]
pub struct SourceTaskContext {
    pub connector: String,
    pub task_id: u32,
    pub offsets: Arc<dyn OffsetReader>,
    /// A directory of this task's own (connector and task id), for working files such as spools.
    /// It may not exist yet; the task creates it, and cleans what an earlier run left there.
    pub work_dir: std::path::PathBuf,
}

impl std::fmt::Debug for SourceTaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceTaskContext")
            .field("connector", &self.connector)
            .field("task_id", &self.task_id)
            .finish_non_exhaustive()
    }
}

/// A configured source connector. It runs no data itself: it splits its work into task configs.
#[async_trait]
pub trait SourceConnector: Send + Sync {
    /// Called once with the validated configuration.
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()>;

    /// Splits the work into at most `max_tasks` task configurations (at least one).
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>>;

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Copies records from an external system.
///
/// Contract:
/// - Delivery is at least once. After a crash the task restarts from the last committed offsets
///   (read through [`SourceTaskContext::offsets`]) and may emit records again that were produced but
///   not yet committed.
/// - `poll` is called in a loop from one tokio task; it must return within about a second, with an
///   empty batch when nothing is new, so the runtime can commit offsets and react to stop requests.
/// - Records are produced in the order `poll` returns them. The offset of the last record of a source
///   partition is what is committed for it, so offsets must only grow within a partition.
/// - `commit` is called only after every record up to those offsets is acknowledged by Kafka
///   and the offsets themselves are stored; this is where a task may release upstream resources
///   (e.g. confirm a replication slot position). Methods are never called concurrently.
#[async_trait]
pub trait SourceTask: Send + Sync {
    async fn start(&mut self, ctx: SourceTaskContext, config: &ConnectorConfig) -> Result<()>;

    async fn poll(&mut self) -> Result<Vec<SourceRecord>>;

    /// The runtime stored these offsets durably after Kafka acknowledged the records they cover.
    async fn commit(&mut self, _offsets: &[(SourcePartition, SourceOffset)]) -> Result<()> {
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}
