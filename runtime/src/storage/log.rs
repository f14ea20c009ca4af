//! The log the config and status stores are built on. Distributed mode: a compacted topic every
//! worker consumes from the beginning into memory, able to wait until it has read everything
//! written so far, with writes acknowledged by all replicas. Standalone mode: memory only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::StorageError;
use crate::config::WorkerConfig;

/// One record read from the log.
pub(crate) struct LogRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub offset: i64,
}

pub(crate) type Apply = Box<dyn FnMut(LogRecord<'_>) + Send>;

/// An ordered log of keyed records, applied to a store's state as they are read.
#[async_trait::async_trait]
pub(crate) trait Log: Send + Sync {
    /// Waits until every record written before this call has been applied.
    async fn read_to_end(&self) -> Result<(), StorageError>;

    /// Writes a record (a `None` value deletes); with `applied`, returns once this process's
    /// state reflects it.
    async fn append(
        &self,
        key: &str,
        value: Option<&[u8]>,
        applied: bool,
    ) -> Result<(), StorageError>;
}

/// Standalone mode's log: records are applied at once and live as long as the process.
pub(crate) struct MemoryLog {
    apply: std::sync::Mutex<(Apply, i64)>,
}

impl MemoryLog {
    pub(crate) fn new(apply: Apply) -> Self {
        Self {
            apply: std::sync::Mutex::new((apply, 0)),
        }
    }
}

#[async_trait::async_trait]
impl Log for MemoryLog {
    async fn read_to_end(&self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn append(
        &self,
        key: &str,
        value: Option<&[u8]>,
        _applied: bool,
    ) -> Result<(), StorageError> {
        let mut guard = self.apply.lock().unwrap_or_else(|e| e.into_inner());
        let (apply, next) = &mut *guard;
        apply(LogRecord {
            key: Some(key.as_bytes()),
            value,
            offset: *next,
        });
        *next += 1;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Log for KafkaLog {
    async fn read_to_end(&self) -> Result<(), StorageError> {
        KafkaLog::read_to_end(self).await.map(drop)
    }

    async fn append(
        &self,
        key: &str,
        value: Option<&[u8]>,
        applied: bool,
    ) -> Result<(), StorageError> {
        if !applied {
            // Queued in order (one idempotent producer keeps per-partition order); the caller
            // does not wait for delivery, so a worker cut off from Kafka is not held up.
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
            if let Some(value) = value {
                record = record.payload(value);
            }
            let delivery =
                self.producer
                    .send_result(record)
                    .map_err(|(source, _)| StorageError::Kafka {
                        topic: self.topic.clone(),
                        source,
                    })?;
            let topic = self.topic.clone();
            tokio::spawn(async move {
                if let Ok(Err((e, _))) = delivery.await {
                    warn!(%topic, error = %e, "an internal-topic write was not delivered");
                }
            });
            return Ok(());
        }
        let (partition, offset) = self.send(key, value).await?;
        self.wait_for(&BTreeMap::from([(partition, offset + 1)]))
            .await
    }
}

pub(crate) struct KafkaLog {
    topic: String,
    producer: FutureProducer,
    consumer: Arc<StreamConsumer>,
    partitions: Vec<i32>,
    /// Next offset to read, per partition.
    progress: watch::Receiver<BTreeMap<i32, i64>>,
}

impl KafkaLog {
    /// Starts reading `topic` from the beginning, handing each record to `apply`.
    pub(crate) async fn start(
        worker: &WorkerConfig,
        topic: &str,
        client_id: &str,
        mut apply: Apply,
        cancel: CancellationToken,
    ) -> Result<Self, StorageError> {
        let kafka = |source| StorageError::Kafka {
            topic: topic.to_owned(),
            source,
        };
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &worker.bootstrap_servers);
        for (key, value) in worker.client_settings(&worker.kafka) {
            config.set(key, value);
        }
        config.set("client.id", client_id);
        let producer: FutureProducer = config
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", "30000")
            .set("partitioner", "murmur2_random")
            .create()
            .map_err(kafka)?;
        let consumer: StreamConsumer = config
            .clone()
            .set("group.id", format!("{client_id}-reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "50")
            .create()
            .map_err(kafka)?;
        let consumer = Arc::new(consumer);
        let partitions = {
            let consumer = consumer.clone();
            let topic = topic.to_owned();
            tokio::task::spawn_blocking(move || {
                consumer
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))
                    .map(|m| {
                        m.topics()
                            .iter()
                            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                            .collect::<Vec<i32>>()
                    })
            })
            .await?
            .map_err(kafka)?
        };
        if partitions.is_empty() {
            return Err(StorageError::Topic {
                topic: topic.to_owned(),
                message: "has no partitions".into(),
            });
        }
        let mut assignment = TopicPartitionList::new();
        for p in &partitions {
            assignment
                .add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(kafka)?;
        }
        consumer.assign(&assignment).map_err(kafka)?;
        let (progress_tx, progress) = watch::channel(BTreeMap::new());
        let reader = consumer.clone();
        let name = topic.to_owned();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = cancel.cancelled() => return,
                    m = reader.recv() => m,
                };
                match message {
                    Ok(m) => {
                        apply(LogRecord {
                            key: m.key(),
                            value: m.payload(),
                            offset: m.offset(),
                        });
                        progress_tx.send_modify(|p| {
                            p.insert(m.partition(), m.offset() + 1);
                        });
                    }
                    Err(e) => {
                        warn!(topic = %name, error = %e, "reading an internal topic failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Ok(Self {
            topic: topic.to_owned(),
            producer,
            consumer,
            partitions,
            progress,
        })
    }

    pub(crate) fn partition_count(&self) -> usize {
        self.partitions.len()
    }

    /// Waits until every record written before this call has been applied. Returns the end
    /// offsets it waited for.
    pub(crate) async fn read_to_end(&self) -> Result<BTreeMap<i32, i64>, StorageError> {
        let started = std::time::Instant::now();
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let partitions = self.partitions.clone();
        // One ListOffsets per broker for all partitions (timestamp -1 = the end), instead of a
        // round trip per partition.
        let ends = tokio::task::spawn_blocking(move || {
            let mut query = TopicPartitionList::new();
            for p in &partitions {
                query.add_partition_offset(&topic, *p, Offset::End)?;
            }
            let found = consumer.offsets_for_times(query, Duration::from_secs(10))?;
            Ok::<_, rdkafka::error::KafkaError>(
                found
                    .elements()
                    .iter()
                    .map(|e| {
                        let end = match e.offset() {
                            Offset::Offset(o) => o,
                            _ => 0,
                        };
                        (e.partition(), end)
                    })
                    .collect::<BTreeMap<i32, i64>>(),
            )
        })
        .await?
        .map_err(|source| StorageError::Kafka {
            topic: self.topic.clone(),
            source,
        })?;
        let fetched = started.elapsed();
        self.wait_for(&ends).await?;
        tracing::debug!(topic = %self.topic, ?fetched, took = ?started.elapsed(), "read to the end");
        Ok(ends)
    }

    /// Waits until the log has been read up to `ends` (next offsets per partition).
    pub(crate) async fn wait_for(&self, ends: &BTreeMap<i32, i64>) -> Result<(), StorageError> {
        let mut progress = self.progress.clone();
        let reached = |p: &BTreeMap<i32, i64>| {
            ends.iter()
                .all(|(partition, end)| *end <= 0 || p.get(partition).is_some_and(|at| at >= end))
        };
        tokio::time::timeout(Duration::from_secs(60), progress.wait_for(reached))
            .await
            .map_err(|_| StorageError::Topic {
                topic: self.topic.clone(),
                message: "not read to its end within 60 s".into(),
            })?
            .map_err(|_| StorageError::Topic {
                topic: self.topic.clone(),
                message: "reader stopped".into(),
            })?;
        Ok(())
    }

    /// Writes one record (a `None` value is a tombstone) and waits until all replicas have it.
    /// Returns its partition and offset.
    pub(crate) async fn send(
        &self,
        key: &str,
        value: Option<&[u8]>,
    ) -> Result<(i32, i64), StorageError> {
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(source, _)| StorageError::Kafka {
                topic: self.topic.clone(),
                source,
            })
    }
}
