//! `s3-source`: replays an archive written by `s3-sink` into topics.
//!
//! Each task owns a share of the archived topic partitions. It lists the archive, orders a
//! partition's objects by their start offset and merges their records by Kafka offset (objects
//! of different directories of the field/time partitioners interleave), so records are produced
//! in their original order per partition, to the same partition number, with key, value, headers
//! and timestamp. The source offset of a record is its object key, index in the object and
//! original offset; after a restart records up to the committed original offset are skipped.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Result, Schema, SchemaRef, SourceConnector,
    SourcePartition, SourcePlugin, SourceRecord, SourceTask, SourceTaskContext, Value,
};
use tracing::info;

use crate::config::{SourceConfig, check_credentials, source_spec};
use crate::format::{ArchivedRecord, read_object};
use crate::partition::{parse_object_key, topic_prefix};
use crate::store::Store;

pub struct S3SourcePlugin;

impl SourcePlugin for S3SourcePlugin {
    fn name(&self) -> &str {
        "s3-source"
    }
    fn doc(&self) -> &str {
        "Replays an archive written by s3-sink (JSON lines or Parquet) into topics, in offset order per partition, with keys, values, headers and timestamps; resumes after a crash."
    }
    fn spec(&self) -> ConfigSpec {
        source_spec()
    }
    fn connector(&self) -> Box<dyn SourceConnector> {
        Box::new(S3SourceConnector::default())
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(S3SourceTask::default())
    }
}

#[derive(Default)]
struct S3SourceConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SourceConnector for S3SourceConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        let parsed: SourceConfig = config.parse()?;
        check_credentials(&parsed.connection).map_err(ConnectorError::config)?;
        self.config = config.clone();
        Ok(())
    }

    /// Task `i` of `n` replays the topic partitions whose partition number is `i` modulo `n`.
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        let n = max_tasks.max(1);
        Ok((0..n)
            .map(|i| {
                self.config
                    .clone()
                    .with("task_index", i)
                    .with("task_count", n)
            })
            .collect())
    }
}

/// Records of one loaded object, waiting to be merged.
struct Loaded {
    key: String,
    records: VecDeque<(usize, ArchivedRecord)>,
}

/// Replay state of one archived topic partition.
#[derive(Default)]
struct PartitionReplay {
    /// Objects not loaded yet, by start offset.
    pending: BTreeMap<i64, String>,
    seen: HashSet<String>,
    loaded: Vec<Loaded>,
    /// Original offset of the last record produced (or committed before a restart).
    last: Option<i64>,
    resumed: bool,
}

impl PartitionReplay {
    /// The next record in offset order, loading objects as needed.
    async fn next(&mut self, store: &Store) -> Result<Option<(String, usize, ArchivedRecord)>> {
        loop {
            let head = self
                .loaded
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.records.front().map(|(_, r)| (Reverse(r.offset), i)))
                .collect::<BinaryHeap<_>>()
                .pop();
            let next_start = self.pending.keys().next().copied();
            // Load the next object first if it may hold an earlier record.
            let load = match (head, next_start) {
                (None, Some(_)) => true,
                (Some((Reverse(offset), _)), Some(start)) => start <= offset,
                _ => false,
            };
            if load {
                let Some((_, key)) = self.pending.pop_first() else {
                    continue;
                };
                let data = store.get(&key).await?;
                let records = tokio::task::spawn_blocking({
                    let key = key.clone();
                    move || read_object(&key, data)
                })
                .await
                .map_err(|e| ConnectorError::fatal(format!("decoding thread failed: {e}")))??;
                self.loaded.push(Loaded {
                    key,
                    records: records.into_iter().enumerate().collect(),
                });
                continue;
            }
            let Some((_, i)) = head else {
                return Ok(None);
            };
            let Some((index, record)) = self.loaded[i].records.pop_front() else {
                continue;
            };
            let key = self.loaded[i].key.clone();
            if self.loaded[i].records.is_empty() {
                self.loaded.swap_remove(i);
            }
            // Already produced (before a restart), or an overlapping rewrite.
            if self.last.is_some_and(|last| record.offset <= last) {
                continue;
            }
            self.last = Some(record.offset);
            return Ok(Some((key, index, record)));
        }
    }
}

#[derive(Default)]
struct S3SourceTask {
    config: Option<SourceConfig>,
    store: Option<Store>,
    ctx: Option<SourceTaskContext>,
    partitions: BTreeMap<(String, i32), PartitionReplay>,
    last_listing: Option<Instant>,
}

fn source_partition(topic: &str, partition: i32) -> SourcePartition {
    let mut map = SourcePartition::new();
    map.insert("topic".into(), json!(topic));
    map.insert("partition".into(), json!(partition));
    map
}

fn schema_of(value: &Value) -> Option<SchemaRef> {
    match value {
        Value::Bytes(_) => Some(Arc::new(Schema::bytes().optional())),
        Value::String(_) => Some(Arc::new(Schema::string().optional())),
        _ => None,
    }
}

impl S3SourceTask {
    /// Lists the archive and adds objects not seen before.
    async fn list(&mut self) -> Result<()> {
        let (Some(config), Some(store), Some(ctx)) = (&self.config, &self.store, &self.ctx) else {
            return Err(ConnectorError::fatal("s3-source task used before start"));
        };
        for topic in &config.topics {
            let keys = store
                .list(&topic_prefix(&config.connection.topics_dir, topic))
                .await?;
            for key in keys {
                let Some(name) = parse_object_key(&key) else {
                    continue;
                };
                if name.topic != *topic
                    || name.partition.rem_euclid(config.task_count as i32)
                        != config.task_index as i32
                {
                    continue;
                }
                let replay = self
                    .partitions
                    .entry((topic.clone(), name.partition))
                    .or_default();
                if !replay.resumed {
                    replay.resumed = true;
                    let committed = ctx
                        .offsets
                        .offset(&source_partition(topic, name.partition))
                        .await?;
                    replay.last = committed
                        .as_ref()
                        .and_then(|o| o.get("offset"))
                        .and_then(serde_json::Value::as_i64);
                }
                if replay.seen.insert(key.clone()) {
                    replay.pending.insert(name.start_offset, key);
                }
            }
        }
        // Objects wholly before the resume position need no download: with the default
        // partitioner (one directory per partition) an object ends before the next one starts.
        for replay in self.partitions.values_mut() {
            if let Some(last) = replay.last
                && replay.loaded.is_empty()
            {
                let dirs: HashSet<&str> = replay
                    .pending
                    .values()
                    .filter_map(|k| k.rsplit_once('/').map(|(d, _)| d))
                    .collect();
                if dirs.len() == 1 {
                    let starts: Vec<i64> = replay.pending.keys().copied().collect();
                    for pair in starts.windows(2) {
                        if pair[1] <= last + 1 {
                            replay.pending.remove(&pair[0]);
                        }
                    }
                }
            }
        }
        self.last_listing = Some(Instant::now());
        Ok(())
    }
}

#[async_trait]
impl SourceTask for S3SourceTask {
    async fn start(&mut self, ctx: SourceTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config: SourceConfig = config.parse()?;
        check_credentials(&config.connection).map_err(ConnectorError::config)?;
        let store = Store::connect(&config.connection).await?;
        info!(connector = %ctx.connector, task = ctx.task_id, bucket = %config.connection.bucket, topics = ?config.topics, "s3-source task started");
        self.config = Some(config);
        self.store = Some(store);
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let Some(config) = self.config.clone() else {
            return Err(ConnectorError::fatal("s3-source task used before start"));
        };
        let interval = Duration::from_millis(config.poll_interval);
        if self.last_listing.is_none_or(|t| t.elapsed() >= interval) {
            self.list().await?;
        }
        let Some(store) = self.store.clone() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(config.batch_size);
        for ((topic, partition), replay) in &mut self.partitions {
            let target = config.topic_mapping.get(topic).unwrap_or(topic);
            while out.len() < config.batch_size {
                let Some((key, index, record)) = replay.next(&store).await? else {
                    break;
                };
                let mut offset = serde_json::Map::new();
                offset.insert("object".into(), json!(key));
                offset.insert("index".into(), json!(index));
                offset.insert("offset".into(), json!(record.offset));
                out.push(SourceRecord {
                    topic: target.clone(),
                    partition: Some(*partition),
                    key_schema: schema_of(&record.key),
                    key: record.key,
                    value_schema: schema_of(&record.value),
                    value: record.value,
                    headers: record.headers,
                    timestamp: record.timestamp,
                    source_partition: source_partition(topic, *partition),
                    source_offset: offset,
                });
            }
        }
        if out.is_empty() {
            // Everything listed is produced: wait (briefly, so stop stays prompt) for the next
            // listing.
            let wait = self
                .last_listing
                .map_or(Duration::ZERO, |t| interval.saturating_sub(t.elapsed()));
            tokio::time::sleep(wait.min(Duration::from_millis(500))).await;
        }
        Ok(out)
    }
}
