use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sluice_connector_api::{
    ConnectorConfig, ErrorKind, Header, SinkRecord, SinkTask, SinkTaskContext, TopicPartition,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Failed, Stage};
use crate::convert::Converter;
use crate::error::TaskError;
use crate::kafka::{RebalanceEvent, SinkConsumer, release};
use crate::transform::TransformRecord;

/// Runs one sink task until cancelled or failed.
pub(crate) struct SinkTaskRunner {
    pub(crate) connector: String,
    pub(crate) task_id: u32,
    pub(crate) task: Box<dyn SinkTask>,
    pub(crate) config: ConnectorConfig,
    pub(crate) topics: Vec<String>,
    pub(crate) consumer: Arc<SinkConsumer>,
    pub(crate) rebalances: mpsc::UnboundedReceiver<RebalanceEvent>,
    pub(crate) key_converter: Arc<dyn Converter>,
    pub(crate) value_converter: Arc<dyn Converter>,
    pub(crate) flush_interval: Duration,
    pub(crate) batch_size: usize,
    /// The pipeline's `errors` policy: tolerance, logging, dead-letter topic.
    pub(crate) errors: Arc<super::ErrorHandler>,
    /// Wait before the next retry of a batch whose `put` failed for a transient reason.
    pub(crate) retry_delay: Duration,
    /// The connector's transform chain (often empty).
    pub(crate) transforms: Arc<crate::transform::Chain>,
    pub(crate) metrics: Arc<crate::metrics::TaskMetrics>,
    /// The task's requests for an early commit (shared with its context).
    pub(crate) commits: sluice_connector_api::CommitRequest,
    /// The task's requests to consume partitions again from an earlier offset.
    pub(crate) rewinds: sluice_connector_api::RewindRequest,
}

/// First wait before a batch whose `put` failed for a transient reason is tried again.
pub(crate) const RETRY_START: Duration = Duration::from_millis(100);

/// Per partition: the offset after the last record handed to `put`, and the last committed one.
#[derive(Default)]
struct Positions {
    consumed: HashMap<TopicPartition, i64>,
    committed: HashMap<TopicPartition, i64>,
}

impl SinkTaskRunner {
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), TaskError> {
        let ctx = SinkTaskContext {
            connector: self.connector.clone(),
            task_id: self.task_id,
            errant_records: Some(Arc::new(super::SinkReporter {
                errors: self.errors.clone(),
                key_converter: self.key_converter.clone(),
                value_converter: self.value_converter.clone(),
            })),
            cancel: cancel.child_token(),
            commits: self.commits.clone(),
            rewinds: self.rewinds.clone(),
        };
        self.task
            .start(ctx, &self.config)
            .await
            .map_err(TaskError::connector("start"))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&topics)?;
        info!(connector = %self.connector, task = self.task_id, topics = ?self.topics, "sink task started");
        let mut positions = Positions::default();
        let outcome = self.copy(&cancel, &mut positions).await;
        // On a clean stop, and after a failure, commit what the task has made durable.
        let flushed = match &outcome {
            Err(
                TaskError::Connector {
                    stage: "put" | "flush",
                    ..
                }
                | TaskError::RetriesExhausted { .. },
            ) => Ok(()),
            _ => self.flush_and_commit(&mut positions).await,
        };
        let assigned: Vec<TopicPartition> = positions.consumed.keys().cloned().collect();
        if let Err(e) = self.task.close(&assigned).await {
            warn!(connector = %self.connector, task = self.task_id, error = %e, "sink task close failed");
        }
        if let Err(e) = self.task.stop().await {
            warn!(connector = %self.connector, task = self.task_id, error = %e, "sink task stop failed");
        }
        // Revocations still pending: everything is closed, so they may go.
        let mut pending = Vec::new();
        while let Ok(event) = self.rebalances.try_recv() {
            if let RebalanceEvent::Revoked { partitions, .. } = event {
                pending.extend(partitions);
            }
        }
        if !pending.is_empty()
            && let Err(e) = self.release(pending).await
        {
            warn!(connector = %self.connector, task = self.task_id, error = %e, "releasing revoked partitions failed");
        }
        // Leaving the group blocks on the broker: do it off the async threads.
        let consumer = self.consumer.clone();
        drop(self);
        tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await?;
        outcome.and(flushed)
    }

    async fn copy(
        &mut self,
        cancel: &CancellationToken,
        positions: &mut Positions,
    ) -> Result<(), TaskError> {
        let mut flush_tick = tokio::time::interval(self.flush_interval);
        // A flush that waited on the destination longer than the interval is not followed by a
        // burst of flushes: records (and the group's heartbeat of consumption) come in between.
        flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        flush_tick.tick().await;
        // When the current run of transient `put` failures began.
        let mut failing_since: Option<tokio::time::Instant> = None;
        loop {
            // Revoked partitions are closed before anything else happens: they stay this task's
            // until then, and nothing of them is written or committed after.
            self.apply_rebalances(positions, None).await?;
            let batch = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                Some(event) = self.rebalances.recv() => {
                    self.apply_rebalances(positions, Some(event)).await?;
                    continue;
                }
                // Periodic flush: with rebalances, the only place Kafka offsets advance.
                _ = flush_tick.tick() => {
                    self.commit_while_retrying(positions).await?;
                    continue;
                }
                // The task made something durable and wants it committed now.
                _ = self.commits.requested() => {
                    self.commit_while_retrying(positions).await?;
                    continue;
                }
                first = self.consumer.recv() => {
                    let first = match first {
                        Ok(message) => message,
                        Err(e) => {
                            // Consumer errors (a topic not created yet, a broker away) are
                            // transient to librdkafka, which keeps retrying underneath.
                            warn!(connector = %self.connector, task = self.task_id, error = %e, "consumer error");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    // Each with where it was consumed: a record a transform drops still counts.
                    let item = |m: &BorrowedMessage<'_>| {
                        (TopicPartition::new(m.topic(), m.partition()), m.offset(), self.to_record(m))
                    };
                    let mut batch = vec![item(&first)];
                    while batch.len() < self.batch_size {
                        match self.consumer.recv().now_or_never() {
                            Some(Ok(message)) => batch.push(item(&message)),
                            Some(Err(e)) => {
                                warn!(connector = %self.connector, task = self.task_id, error = %e, "consumer error");
                                break;
                            }
                            None => break,
                        }
                    }
                    batch
                }
            };
            self.metrics.sink_read.inc_by(batch.len() as u64);
            let mut records = Vec::with_capacity(batch.len());
            // Where each partition stands after this batch (records put and records skipped),
            // and its first offset, to read the batch again after a retriable failure. A batch
            // spans few partitions: a short list beats hashing every record.
            let mut spans: Vec<(TopicPartition, i64, i64)> = Vec::new();
            let mut failure = None;
            for (tp, offset, converted) in batch {
                let span = match spans.iter().position(|(t, _, _)| *t == tp) {
                    Some(i) => i,
                    None => {
                        spans.push((tp, offset, offset));
                        spans.len() - 1
                    }
                };
                let handled = match converted {
                    Ok(Some(record)) => {
                        records.push(record);
                        true
                    }
                    // Dropped by a transform: consumed all the same.
                    Ok(None) => true,
                    // Tolerated: logged and dead-lettered (durably) before moving past it.
                    Err(failed) => match self.errors.handle(*failed).await {
                        Ok(()) => true,
                        Err(e) => {
                            failure = Some(e);
                            false
                        }
                    },
                };
                if !handled {
                    break;
                }
                spans[span].2 = offset + 1;
            }
            // Records before a bad one are still written, so the committed position stops right
            // at the bad record.
            if !records.is_empty() {
                let count = records.len() as u64;
                let began = std::time::Instant::now();
                let put = self.task.put(records).await;
                self.metrics
                    .sink_put_seconds
                    .observe(began.elapsed().as_secs_f64());
                match put {
                    Ok(()) => {
                        self.metrics.sink_sent.inc_by(count);
                    }
                    Err(e) if e.kind() == ErrorKind::Retriable => {
                        self.metrics.retries.inc();
                        // The destination refuses for now: read the batch again and retry,
                        // waiting longer each time (Kafka Connect's RetriableException). With
                        // `errors.retry_timeout` set, the task fails once it has kept failing
                        // that long; without, it retries until stopped, as Kafka Connect does.
                        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                        let limit = self.errors.policy.retry_timeout;
                        if limit > 0 && since.elapsed() >= Duration::from_millis(limit) {
                            return Err(TaskError::RetriesExhausted {
                                stage: "put",
                                waited: since.elapsed(),
                                source: e,
                            });
                        }
                        let delay = jittered(self.retry_delay);
                        warn!(connector = %self.connector, task = self.task_id, error = %e, ?delay, "put failed; retrying the batch");
                        rewind(self.consumer.clone(), &spans).await?;
                        // Partitions the task dropped taken records of go back further.
                        self.apply_rewinds(positions).await?;
                        // What is durable is committed meanwhile: a task that waits for
                        // commits (an S3 schedule) gets them, and a restart has less to redo.
                        self.commit_while_retrying(positions).await?;
                        tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            // A revocation does not wait for the retry: the next owner may
                            // have better luck, and the group is waiting.
                            Some(event) = self.rebalances.recv() => {
                                self.apply_rebalances(positions, Some(event)).await?;
                            }
                            _ = tokio::time::sleep(delay) => {}
                        }
                        self.retry_delay = (self.retry_delay * 2).min(self.retry_delay_max());
                        continue;
                    }
                    Err(e) => return Err(TaskError::connector("put")(e)),
                }
            }
            failing_since = None;
            self.retry_delay = RETRY_START;
            positions.consumed.extend(
                spans
                    .into_iter()
                    .filter(|(_, first, next)| next > first)
                    .map(|(tp, _, next)| (tp, next)),
            );
            self.apply_rewinds(positions).await?;
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    fn retry_delay_max(&self) -> Duration {
        Duration::from_millis(self.errors.policy.retry_delay_max.max(100))
    }

    /// Applies `next` and every rebalance waiting behind it. A revocation is Kafka Connect's
    /// `onPartitionsRevoked`: what the task made durable is committed, the revoked partitions are
    /// closed (their pending data flushed or dropped by the task), and only then are they
    /// released to the group; nothing of them is written or committed afterwards.
    async fn apply_rebalances(
        &mut self,
        positions: &mut Positions,
        mut next: Option<RebalanceEvent>,
    ) -> Result<(), TaskError> {
        let mut changed = false;
        while let Some(event) = next.take().or_else(|| self.rebalances.try_recv().ok()) {
            changed = true;
            match event {
                RebalanceEvent::Assigned(partitions) => {
                    info!(connector = %self.connector, task = self.task_id, ?partitions, "partitions assigned");
                    self.task
                        .open(&partitions)
                        .await
                        .map_err(TaskError::connector("open"))?;
                }
                RebalanceEvent::Revoked { partitions, lost } => {
                    info!(connector = %self.connector, task = self.task_id, ?partitions, lost, "partitions revoked");
                    // Lost partitions belong to another member already: nothing of them may be
                    // committed (the group would refuse it anyway).
                    let committed = if lost {
                        Ok(())
                    } else {
                        self.flush_and_commit(positions).await
                    };
                    let closed = self
                        .task
                        .close(&partitions)
                        .await
                        .map_err(TaskError::connector("close"));
                    // Their next owner resumes from the last commit: records after it are
                    // delivered again there, never lost.
                    for tp in &partitions {
                        positions.consumed.remove(tp);
                        positions.committed.remove(tp);
                    }
                    let released = self.release(partitions).await;
                    match committed {
                        // The destination is away: the next owner writes it again.
                        Err(TaskError::Connector { stage, source })
                            if source.kind() == ErrorKind::Retriable =>
                        {
                            warn!(connector = %self.connector, task = self.task_id, stage, error = %source, "revoked partitions not flushed; their next owner writes them again");
                        }
                        other => other?,
                    }
                    closed?;
                    released?;
                }
            }
        }
        if changed {
            let assigned = self.consumer.assignment().map_or(0, |list| list.count());
            self.metrics.sink_partitions.set(assigned as i64);
        }
        Ok(())
    }

    /// Gives revoked partitions back to the group (see [`release`]).
    async fn release(&self, partitions: Vec<TopicPartition>) -> Result<(), TaskError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || release(consumer.as_ref(), &partitions)).await??;
        Ok(())
    }

    /// Converts and transforms a consumed message; `None` when a transform dropped it.
    fn to_record(&self, message: &BorrowedMessage<'_>) -> Result<Option<SinkRecord>, Box<Failed>> {
        let location = || {
            format!(
                "{}-{} offset {}",
                message.topic(),
                message.partition(),
                message.offset()
            )
        };
        let headers = headers_of(message);
        let failed = |stage, error| {
            Box::new(Failed {
                stage,
                error,
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: headers_of(message),
                timestamp: message.timestamp().to_millis(),
            })
        };
        let (key_schema, key) = self.key_converter.decode(message.key()).map_err(|source| {
            failed(
                Stage::KeyConverter,
                TaskError::Convert {
                    part: "key",
                    location: location(),
                    source,
                },
            )
        })?;
        let (value_schema, value) =
            self.value_converter
                .decode(message.payload())
                .map_err(|source| {
                    failed(
                        Stage::ValueConverter,
                        TaskError::Convert {
                            part: "value",
                            location: location(),
                            source,
                        },
                    )
                })?;
        let record = SinkRecord {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key_schema,
            key,
            value_schema,
            value,
            headers,
            timestamp: message.timestamp().to_millis(),
        };
        if self.transforms.is_empty() {
            return Ok(Some(record));
        }
        let consumed = record.topic_partition();
        match self.transforms.apply(TransformRecord::from_sink(record)) {
            Ok(out) => Ok(out.map(|r| r.into_sink(&consumed, message.offset()))),
            Err(source) => Err(failed(
                Stage::Transformation,
                TaskError::Transform {
                    location: location(),
                    source: Box::new(source),
                },
            )),
        }
    }

    /// Asks the task what is durable and commits exactly that to Kafka.
    async fn flush_and_commit(&mut self, positions: &mut Positions) -> Result<(), TaskError> {
        if positions.consumed.is_empty() {
            return Ok(());
        }
        let flushed = self.task.flush(&positions.consumed).await;
        self.apply_rewinds(positions).await?;
        let durable = flushed.map_err(TaskError::connector("flush"))?;
        let mut list = TopicPartitionList::new();
        let mut advanced = Vec::new();
        for (tp, offset) in durable {
            // Never beyond what was consumed, never backwards.
            let consumed = positions.consumed.get(&tp).copied();
            let offset = consumed.map_or(offset, |c| offset.min(c));
            if consumed.is_none() || positions.committed.get(&tp).is_some_and(|c| *c >= offset) {
                continue;
            }
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))?;
            advanced.push((tp, offset));
        }
        if advanced.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let began = std::time::Instant::now();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await?;
        self.metrics.commit(began.elapsed(), committed.is_ok());
        if let Err(e) = committed {
            // Nothing is lost: the offsets stay uncommitted (at worst records are delivered
            // again after a crash), and the next flush commits them with what came since.
            warn!(connector = %self.connector, task = self.task_id, error = %e, "committing sink offsets failed; retried at the next flush");
            return Ok(());
        }
        debug!(connector = %self.connector, task = self.task_id, partitions = advanced.len(), "sink offsets committed");
        let committed: HashMap<TopicPartition, i64> = advanced.into_iter().collect();
        self.task.committed(&committed).await;
        positions.committed.extend(committed);
        Ok(())
    }

    /// Moves the consumer back to where the task asked partitions to be delivered again from
    /// (Kafka Connect's `SinkTaskContext.offset`), for the partitions it still owns; what was
    /// consumed after that offset no longer counts, so nothing past it is committed.
    async fn apply_rewinds(&mut self, positions: &mut Positions) -> Result<(), TaskError> {
        let requested = self.rewinds.take();
        if requested.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let assigned = tokio::task::spawn_blocking(move || consumer.assignment()).await??;
        let mut list = TopicPartitionList::new();
        for (tp, offset) in requested {
            // Whether or not the partition is still owned, nothing past `offset` counts.
            if let Some(consumed) = positions.consumed.get_mut(&tp) {
                *consumed = (*consumed).min(offset);
            }
            if assigned.find_partition(&tp.topic, tp.partition).is_none() {
                debug!(connector = %self.connector, task = self.task_id, partition = %tp, "rewind of a partition no longer owned ignored");
                continue;
            }
            info!(connector = %self.connector, task = self.task_id, partition = %tp, offset, "partition consumed again from an earlier offset");
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))?;
        }
        if list.count() == 0 {
            return Ok(());
        }
        seek(self.consumer.clone(), list).await
    }

    /// [`flush_and_commit`](Self::flush_and_commit) between retries of a batch and on the
    /// flush interval: the destination refusing for now fails nothing here (what it holds is
    /// committed at a later flush).
    async fn commit_while_retrying(&mut self, positions: &mut Positions) -> Result<(), TaskError> {
        match self.flush_and_commit(positions).await {
            Err(TaskError::Connector { source, .. }) if source.kind() == ErrorKind::Retriable => {
                Ok(())
            }
            other => other,
        }
    }
}

/// `delay` shortened by a random part of up to half, so tasks that failed together do not
/// retry in step.
fn jittered(delay: Duration) -> Duration {
    let random = getrandom::u32().unwrap_or(u32::MAX / 2);
    delay.mul_f64(0.5 + 0.5 * f64::from(random) / f64::from(u32::MAX))
}

/// Moves the consumer back to the first offset of each partition's span so a batch is read again.
async fn rewind(
    consumer: Arc<SinkConsumer>,
    spans: &[(TopicPartition, i64, i64)],
) -> Result<(), TaskError> {
    let mut list = TopicPartitionList::new();
    for (tp, offset, _) in spans {
        list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))?;
    }
    seek(consumer, list).await
}

/// Moves the consumer to `list`'s offsets. A partition that could not be moved fails the task:
/// consuming on past records that must be delivered again would let their offsets be committed
/// unwritten (a restart resumes from the committed offsets instead).
async fn seek(consumer: Arc<SinkConsumer>, list: TopicPartitionList) -> Result<(), TaskError> {
    let moved = tokio::task::spawn_blocking(move || {
        consumer.seek_partitions(list, Duration::from_secs(10))
    })
    .await??;
    for element in moved.elements() {
        element.error()?;
    }
    Ok(())
}

/// A consumed message's headers.
fn headers_of(message: &BorrowedMessage<'_>) -> Vec<Header> {
    message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default()
}
