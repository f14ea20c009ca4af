//! Sink connectors: Kafka topics -> an external system.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::error::{ConnectorError, Result};
use crate::record::{SinkRecord, TopicPartition};
use crate::spec::ConnectorConfig;

/// What the runtime gives a sink task at start.
#[derive(Clone)]
pub struct SinkTaskContext {
    pub connector: String,
    pub task_id: u32,
    /// Where the task reports records it cannot write (Kafka Connect's
    /// `SinkTaskContext.errantRecordReporter()`); `None` when the host offers none, in which case
    /// such a record must fail the task.
    pub errant_records: Option<Arc<dyn ErrantRecordReporter>>,
    /// Cancelled when the runtime stops the task. A `put` or `flush` that waits on the
    /// destination (a full buffer behind an endpoint that keeps refusing) ends its wait then with
    /// a [`Retriable`](crate::ErrorKind::Retriable) error; the runtime commits only what `flush`
    /// reports and stops.
    pub cancel: CancellationToken,
    /// Asks the runtime to flush and commit soon instead of at its next interval.
    pub commits: CommitRequest,
    /// Asks the runtime to consume partitions again from an earlier offset.
    pub rewinds: RewindRequest,
}

/// Kafka Connect's `SinkTaskContext.requestCommit()`: a task that just made data durable (an
/// upload finished) asks for the offsets to be committed now. Requests made before the runtime
/// gets to them fold into one flush.
#[derive(Clone, Default)]
pub struct CommitRequest(Arc<tokio::sync::Notify>);

impl CommitRequest {
    /// Asks for a flush and commit; returns at once.
    pub fn request(&self) {
        self.0.notify_one();
    }

    /// Completes when a commit was asked for (for the runtime).
    pub async fn requested(&self) {
        self.0.notified().await;
    }
}

/// Kafka Connect's `SinkTaskContext.offset(...)`: a task that dropped records it had taken (an
/// upload that failed while the destination is away) asks the runtime to deliver its partitions
/// again from the first offset it has not made durable. The runtime moves its consumer there
/// after the `put` or `flush` that asked, before the next batch, and counts nothing after that
/// offset as consumed. A request for a partition the task no longer owns is ignored: its next
/// owner resumes at the committed offset anyway.
#[derive(Clone, Default)]
pub struct RewindRequest(Arc<std::sync::Mutex<HashMap<TopicPartition, i64>>>);

impl RewindRequest {
    /// Asks for `tp` to be consumed again from `offset` (the earliest request per partition
    /// wins until the runtime takes them).
    pub fn rewind(&self, tp: TopicPartition, offset: i64) {
        let mut pending = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending
            .entry(tp)
            .and_modify(|o| *o = (*o).min(offset))
            .or_insert(offset);
    }

    /// The requests made since the last call (for the runtime).
    pub fn take(&self) -> HashMap<TopicPartition, i64> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl fmt::Debug for SinkTaskContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkTaskContext")
            .field("connector", &self.connector)
            .field("task_id", &self.task_id)
            .field("errant_records", &self.errant_records.is_some())
            .field("cancelled", &self.cancel.is_cancelled())
            .finish()
    }
}

/// Takes the records a sink task cannot write (the destination rejected them for good, e.g. an
/// HTTP 400) and applies the pipeline's `errors` policy to each, as the runtime does for records
/// that fail conversion or transformation (Kafka Connect's `ErrantRecordReporter`, stage
/// `TASK_PUT`): with `tolerance: all` the record is skipped, logged if asked and written to the
/// dead-letter topic when one is configured; with `tolerance: none` it is refused.
///
/// Contract:
/// - `Ok` comes back only once the record is dealt with for good (its dead-letter copy is
///   acknowledged by Kafka): from then on the sink may count it as handled and let its offset be
///   committed.
/// - `Err` means the record may not be skipped (`tolerance: none`: the error given, returned as
///   it is; or the dead-letter write failed). The sink must not let the record's offset be
///   committed and fails, returning the error from `put` or `flush`.
/// - It may be called from any task the sink spawns, concurrently.
#[async_trait]
pub trait ErrantRecordReporter: Send + Sync {
    async fn report(&self, record: &SinkRecord, error: ConnectorError) -> Result<()>;
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
/// - Records the destination refuses for good may be handed to
///   [`SinkTaskContext::errant_records`] one by one instead of failing the whole task.
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

    /// Called after the runtime committed `offsets` (per partition, the next offset to read)
    /// to Kafka: from now on a restart or a new owner resumes there. A sink whose writes are
    /// not deterministic on re-delivery (files closed on a wall-clock schedule) uses it to make
    /// sure only data at the committed position can be written twice.
    async fn committed(&mut self, _offsets: &HashMap<TopicPartition, i64>) {}

    async fn stop(&mut self) -> Result<()> {
        Ok(())
    }
}
