use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use sluice_connector_api::{
    ConnectorConfig, SourceOffset, SourcePartition, SourceRecord, SourceTask, SourceTaskContext,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::acks::{AckWindow, SourceProducer};
use super::offsets::ConnectorOffsets;
use super::{Failed, Stage};
use crate::convert::Converter;
use crate::error::TaskError;
use crate::storage::OffsetStore;
use crate::transform::TransformRecord;

/// A record sent to Kafka (or skipped) whose acknowledgement is awaited, with the source
/// position it covers.
struct Sent {
    /// False for a record that was dropped or skipped instead of produced.
    produced: bool,
    topic: String,
    partition: SourcePartition,
    offset: SourceOffset,
}

/// Records not yet acknowledged, in send order; their outcomes arrive in the [`AckWindow`].
struct InFlight {
    window: Arc<AckWindow>,
    sent: VecDeque<Sent>,
    metrics: Arc<crate::metrics::TaskMetrics>,
}

/// A polled record after the transform chain, before its outcome is settled.
enum Through {
    /// No transforms: the record as polled.
    Plain(SourceRecord),
    Transformed {
        result: Result<Option<TransformRecord>, crate::transform::TransformError>,
        topic: String,
        partition: SourcePartition,
        offset: SourceOffset,
        original: Option<Box<SourceRecord>>,
    },
}

/// What the transform chain made of a record.
enum Transformed {
    Keep(SourceRecord),
    /// Dropped or skipped: only its position moves on.
    Skip(SourcePartition, SourceOffset),
}

/// A record's key and value as bytes; `None` is a null.
type Encoded = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Runs one source task until cancelled or failed.
pub(crate) struct SourceTaskRunner {
    pub(crate) connector: String,
    pub(crate) task_id: u32,
    pub(crate) task: Box<dyn SourceTask>,
    pub(crate) config: ConnectorConfig,
    pub(crate) producer: SourceProducer,
    /// Where the producer's deliveries are settled.
    pub(crate) acks: Arc<AckWindow>,
    pub(crate) key_converter: Arc<dyn Converter>,
    pub(crate) value_converter: Arc<dyn Converter>,
    pub(crate) offsets: Arc<dyn OffsetStore>,
    pub(crate) flush_interval: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) shutdown_timeout: Duration,
    /// Reports topics this task writes to for the first time.
    pub(crate) topics: super::TopicTracker,
    /// The pipeline's `errors` policy for records that cannot be converted.
    pub(crate) errors: super::ErrorHandler,
    /// The connector's transform chain (often empty).
    pub(crate) transforms: Arc<crate::transform::Chain>,
    pub(crate) metrics: Arc<crate::metrics::TaskMetrics>,
    /// The task's own directory for working files (below the worker's `data_dir`).
    pub(crate) work_dir: std::path::PathBuf,
}

/// Offsets whose records Kafka has acknowledged, in order, not yet stored.
#[derive(Default)]
struct Acked {
    /// Latest acknowledged offset per source partition (a task has few partitions).
    latest: Vec<(SourcePartition, SourceOffset)>,
    /// Set once a record failed: no offset after it may be stored.
    poisoned: bool,
}

impl SourceTaskRunner {
    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Result<(), TaskError> {
        let ctx = SourceTaskContext {
            connector: self.connector.clone(),
            task_id: self.task_id,
            offsets: Arc::new(ConnectorOffsets {
                connector: self.connector.clone(),
                store: self.offsets.clone(),
            }),
            work_dir: self.work_dir.clone(),
        };
        self.task
            .start(ctx, &self.config)
            .await
            .map_err(TaskError::connector("start"))?;
        info!(connector = %self.connector, task = self.task_id, "source task started");
        let result = self.copy(&cancel).await;
        if let Err(e) = self.task.stop().await {
            warn!(connector = %self.connector, task = self.task_id, error = %e, "source task stop failed");
        }
        result
    }

    async fn copy(&mut self, cancel: &CancellationToken) -> Result<(), TaskError> {
        let mut in_flight = InFlight {
            window: self.acks.clone(),
            sent: VecDeque::new(),
            metrics: self.metrics.clone(),
        };
        let mut acked = Acked::default();
        let mut last_flush = Instant::now();
        let outcome = loop {
            // Acknowledgements are taken in send order, so an offset is only taken once every
            // record before it was acknowledged too.
            if let Err(e) = in_flight.collect(&mut acked) {
                break Err(e);
            }
            if let Err(e) = self.hold_at_bound(&mut in_flight, &mut acked).await {
                break Err(e);
            }
            if last_flush.elapsed() >= self.flush_interval {
                if let Err(e) = self.flush(&mut acked).await {
                    break Err(e);
                }
                last_flush = Instant::now();
            }
            let polling = Instant::now();
            let records = tokio::select! {
                biased;
                // Stop requested: records polled from here on would only be produced again after restart.
                _ = cancel.cancelled() => break Ok(()),
                polled = self.task.poll() => match polled {
                    Ok(records) => {
                        self.metrics.source_poll_seconds.observe(polling.elapsed().as_secs_f64());
                        self.metrics.source_polled.inc_by(records.len() as u64);
                        records
                    }
                    Err(e) => break Err(TaskError::Connector { stage: "poll", source: e }),
                },
            };
            if let Err(e) = self.send_all(records, &mut in_flight, &mut acked).await {
                break Err(e);
            }
        };
        self.drain(&mut in_flight, &mut acked).await;
        // Whatever happened, store what Kafka has acknowledged so a restart resumes after it.
        let flushed = self.flush(&mut acked).await;
        outcome.and(flushed)
    }

    /// Waits for acknowledgements while as many records as allowed are unacknowledged.
    async fn hold_at_bound(
        &self,
        in_flight: &mut InFlight,
        acked: &mut Acked,
    ) -> Result<(), TaskError> {
        while in_flight.sent.len() >= self.max_in_flight {
            in_flight.window.wait().await;
            in_flight.collect(acked)?;
        }
        Ok(())
    }

    async fn send_all(
        &self,
        records: Vec<SourceRecord>,
        in_flight: &mut InFlight,
        acked: &mut Acked,
    ) -> Result<(), TaskError> {
        // The topic last reported as used: most batches write to one topic.
        let mut noted: Option<String> = None;
        for through in self.transform_all(records) {
            let mut record = match self.settle(through).await? {
                Transformed::Keep(record) => record,
                Transformed::Skip(partition, offset) => {
                    // Dropped (a filter) or skipped (tolerated error): its position still
                    // advances, in order with the records around it.
                    in_flight.skip(Sent {
                        produced: false,
                        topic: String::new(),
                        partition,
                        offset,
                    });
                    continue;
                }
            };
            let (key, value) = match self.convert(&record) {
                Ok(encoded) => encoded,
                Err((stage, error)) => {
                    let failed = Failed {
                        stage,
                        error,
                        topic: record.topic.clone(),
                        partition: -1,
                        offset: -1,
                        key: Some(record.key.to_plain_json().to_string().into_bytes()),
                        value: Some(record.value.to_plain_json().to_string().into_bytes()),
                        headers: record.headers.clone(),
                        timestamp: record.timestamp,
                    };
                    self.errors.handle(failed).await?;
                    // Skipped: its position still advances, in order with the records around it.
                    in_flight.skip(Sent {
                        produced: false,
                        topic: std::mem::take(&mut record.topic),
                        partition: std::mem::take(&mut record.source_partition),
                        offset: std::mem::take(&mut record.source_offset),
                    });
                    continue;
                }
            };
            // No header block at all for records without headers: it costs an allocation each.
            let headers = (!record.headers.is_empty()).then(|| {
                record.headers.iter().fold(
                    OwnedHeaders::new_with_capacity(record.headers.len()),
                    |hs, h| {
                        hs.insert(KafkaHeader {
                            key: &h.key,
                            value: h.value.as_deref(),
                        })
                    },
                )
            });
            let seq = in_flight.open();
            let mut out: BaseRecord<'_, [u8], [u8], usize> =
                BaseRecord::with_opaque_to(&record.topic, seq);
            if let Some(headers) = headers {
                out = out.headers(headers);
            }
            if let Some(key) = &key {
                out = out.key(key.as_slice());
            }
            if let Some(value) = &value {
                out = out.payload(value.as_slice());
            }
            if let Some(partition) = record.partition {
                out = out.partition(partition);
            }
            if let Some(ts) = record.timestamp {
                out = out.timestamp(ts);
            }
            loop {
                match self.producer.send(out) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: wait for an acknowledgement to free room.
                        out = back;
                        in_flight.window.wait().await;
                        in_flight.collect(acked)?;
                    }
                    Err((e, _)) => {
                        // Settled as failed, so nothing sent after it is ever taken as stored.
                        in_flight.window.settle(seq, Err(e.clone()));
                        return Err(TaskError::Delivery {
                            topic: record.topic.clone(),
                            source: e,
                        });
                    }
                }
            }
            if noted.as_deref() != Some(record.topic.as_str()) {
                self.topics.note(&record.topic);
                noted = Some(record.topic.clone());
            }
            // The record is sent: its position moves into the acknowledgement.
            in_flight.sent.push_back(Sent {
                produced: true,
                topic: std::mem::take(&mut record.topic),
                partition: std::mem::take(&mut record.source_partition),
                offset: std::mem::take(&mut record.source_offset),
            });
        }
        Ok(())
    }

    /// Runs a polled batch through the transform chain at once (a WASM transform is one call
    /// per batch); failures are settled one by one, in order, by [`Self::settle`].
    fn transform_all(&self, records: Vec<SourceRecord>) -> Vec<Through> {
        if self.transforms.is_empty() {
            return records.into_iter().map(Through::Plain).collect();
        }
        let keep_original = self.errors.policy.dlq_topic.is_some();
        let mut meta = Vec::with_capacity(records.len());
        let mut batch = Vec::with_capacity(records.len());
        for record in records {
            // The original is kept only when a dead-letter copy may be needed.
            let original = keep_original.then(|| Box::new(record.clone()));
            let (transformable, partition, offset) = TransformRecord::from_source(record);
            meta.push((transformable.topic.clone(), partition, offset, original));
            batch.push(transformable);
        }
        self.transforms
            .apply_batch(batch)
            .into_iter()
            .zip(meta)
            .map(
                |(result, (topic, partition, offset, original))| Through::Transformed {
                    result,
                    topic,
                    partition,
                    offset,
                    original,
                },
            )
            .collect()
    }

    /// The outcome of the chain for one record; a failure goes to the error policy.
    async fn settle(&self, through: Through) -> Result<Transformed, TaskError> {
        let (result, topic, partition, offset, original) = match through {
            Through::Plain(record) => return Ok(Transformed::Keep(record)),
            Through::Transformed {
                result,
                topic,
                partition,
                offset,
                original,
            } => (result, topic, partition, offset, original),
        };
        match result {
            Ok(Some(out)) => Ok(Transformed::Keep(out.into_source(partition, offset))),
            Ok(None) => Ok(Transformed::Skip(partition, offset)),
            Err(e) => {
                let failed = Failed {
                    stage: Stage::Transformation,
                    error: TaskError::Transform {
                        location: format!("the record for {topic} at source offset {offset:?}"),
                        source: Box::new(e),
                    },
                    topic,
                    partition: -1,
                    offset: -1,
                    key: original
                        .as_ref()
                        .map(|r| r.key.to_plain_json().to_string().into_bytes()),
                    value: original
                        .as_ref()
                        .map(|r| r.value.to_plain_json().to_string().into_bytes()),
                    headers: original.map(|r| r.headers).unwrap_or_default(),
                    timestamp: None,
                };
                self.errors.handle(failed).await?;
                Ok(Transformed::Skip(partition, offset))
            }
        }
    }

    fn convert(&self, record: &SourceRecord) -> Result<Encoded, (Stage, TaskError)> {
        let location = || {
            format!(
                "the record for {} at source offset {:?}",
                record.topic, record.source_offset
            )
        };
        let key = self
            .key_converter
            .encode_shared(record.key_schema.as_ref(), &record.key)
            .map_err(|source| {
                (
                    Stage::KeyConverter,
                    TaskError::Convert {
                        part: "key",
                        location: location(),
                        source,
                    },
                )
            })?;
        let value = self
            .value_converter
            .encode_shared(record.value_schema.as_ref(), &record.value)
            .map_err(|source| {
                (
                    Stage::ValueConverter,
                    TaskError::Convert {
                        part: "value",
                        location: location(),
                        source,
                    },
                )
            })?;
        Ok((key, value))
    }

    /// Stores acknowledged offsets durably, then tells the task they are committed.
    async fn flush(&mut self, acked: &mut Acked) -> Result<(), TaskError> {
        if acked.latest.is_empty() {
            return Ok(());
        }
        let offsets: Vec<(SourcePartition, SourceOffset)> = std::mem::take(&mut acked.latest);
        let began = Instant::now();
        let stored = self.offsets.put(&self.connector, &offsets).await;
        self.metrics.commit(began.elapsed(), stored.is_ok());
        stored?;
        debug!(connector = %self.connector, task = self.task_id, partitions = offsets.len(), "source offsets stored");
        if let Err(e) = self.task.commit(&offsets).await {
            warn!(connector = %self.connector, task = self.task_id, error = %e, "task commit failed; it is called again at the next flush");
        }
        Ok(())
    }

    /// On stop or failure: waits (within the shutdown timeout) for records already sent.
    async fn drain(&self, in_flight: &mut InFlight, acked: &mut Acked) {
        if in_flight.sent.is_empty() {
            return;
        }
        let waiting = in_flight.sent.len();
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while !in_flight.sent.is_empty() {
                if in_flight.collect(acked).is_err() {
                    // Offsets after a failed record must not be stored.
                    return;
                }
                if !in_flight.sent.is_empty() {
                    in_flight.window.wait().await;
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!(connector = %self.connector, task = self.task_id, waiting, "records still unacknowledged at the shutdown deadline; they are produced again after restart");
        }
        let _ = self.producer.flush(Duration::from_millis(0));
    }
}

impl InFlight {
    /// Registers a record about to be sent; returns its delivery opaque. The caller pushes its
    /// position to `sent` once the send is accepted.
    fn open(&mut self) -> usize {
        self.window.open()
    }

    /// A record that is not produced: its position advances in order with the records around it.
    fn skip(&mut self, sent: Sent) {
        self.window.open_done();
        self.sent.push_back(sent);
    }

    /// Moves the positions of records acknowledged in order into `acked`.
    fn collect(&mut self, acked: &mut Acked) -> Result<(), TaskError> {
        let settled = self.window.take_settled();
        let mut written = 0;
        for sent in self.sent.drain(..settled.done) {
            written += u64::from(sent.produced);
            acked.take(sent);
        }
        self.metrics.source_written.inc_by(written);
        self.metrics.source_active.set(self.sent.len() as i64);
        match settled.failed {
            None => Ok(()),
            Some(source) => {
                let topic = self.sent.pop_front().map(|s| s.topic).unwrap_or_default();
                acked.poisoned = true;
                Err(TaskError::Delivery { topic, source })
            }
        }
    }
}

impl Acked {
    fn take(&mut self, sent: Sent) {
        if self.poisoned {
            return;
        }
        // Records of one partition usually come in runs: check the last one first, and
        // compare in order (the usual clone of one map) before the order-insensitive `==`.
        let same = |p: &SourcePartition| p.iter().eq(sent.partition.iter()) || *p == sent.partition;
        match self.latest.iter_mut().rev().find(|(p, _)| same(p)) {
            Some(slot) => slot.1 = sent.offset,
            None => self.latest.push((sent.partition, sent.offset)),
        }
    }
}
