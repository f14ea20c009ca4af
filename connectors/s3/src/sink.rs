//! `s3-sink`: archives topic partitions into S3 objects, exactly once.
//!
//! Per topic partition the task keeps one open *file set*: one file per directory the
//! partitioner chose (one file with the default partitioner). A set closes as a whole when
//! `flush_size` records arrived, a record's time passed `rotate_interval`, a file reached
//! `max_file_bytes`, a Parquet schema changed, or `rotate_schedule_interval` struck. Closing
//! uploads every file; only then does `flush` report the partition's next offset as committable.
//! While a set is open `flush` reports the set's first offset, so after a crash or rebalance the
//! partition is consumed again from exactly where the open set began. With rotation on record
//! data only, the set boundaries (and so object names and contents) come out the same on every
//! re-consumption, and a rewritten object replaces its earlier copy.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;
use chrono::{Offset, TimeZone};
use chrono_tz::Tz;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Result, SinkConnector, SinkPlugin, SinkRecord,
    SinkTask, SinkTaskContext, TopicPartition,
};
use tracing::{debug, info};

use crate::config::{Format, SinkConfig, sink_spec};
use crate::error::Error;
use crate::format::{Compressor, ParquetEncoder, extension, write_bytes_line, write_json_line};
use crate::partition::{Partitioner, object_key, parse_zone};
use crate::store::Store;

/// Encode buffered JSON/bytes lines once they reach this size.
const LINE_CHUNK_BYTES: usize = 1024 * 1024;
/// Encode buffered Parquet rows once this many are waiting.
const PARQUET_CHUNK_ROWS: usize = 4096;

pub struct S3SinkPlugin;

impl SinkPlugin for S3SinkPlugin {
    fn name(&self) -> &str {
        "s3-sink"
    }
    fn doc(&self) -> &str {
        "Archives topics to S3 as JSON lines, Parquet or raw bytes, partitioned by Kafka partition, field or time; exactly once (object names carry the first offset; offsets are committed after the upload)."
    }
    fn spec(&self) -> ConfigSpec {
        sink_spec()
    }
    fn connector(&self) -> Box<dyn SinkConnector> {
        Box::new(S3SinkConnector::default())
    }
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(S3SinkTask::default())
    }
}

#[derive(Default)]
struct S3SinkConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SinkConnector for S3SinkConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        let parsed: SinkConfig = config.parse()?;
        parsed.check().map_err(ConnectorError::config)?;
        self.config = config.clone();
        Ok(())
    }

    /// Tasks share one consumer group; each archives the partitions it is assigned.
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok((0..max_tasks.max(1)).map(|_| self.config.clone()).collect())
    }
}

/// What the task needs after `start`.
struct Settings {
    config: SinkConfig,
    store: Store,
    partitioner: Partitioner,
    zone: Tz,
    extension: &'static str,
}

#[derive(Default)]
struct S3SinkTask {
    settings: Option<Settings>,
    partitions: HashMap<TopicPartition, PartitionWriter>,
}

/// The encoder of one file, taken out while it runs on a blocking thread.
enum Encoder {
    Lines(Compressor),
    Parquet(Box<ParquetEncoder>),
}

impl Encoder {
    fn output(&mut self) -> Vec<u8> {
        match self {
            Self::Lines(c) => std::mem::take(c.output_mut()),
            Self::Parquet(p) => std::mem::take(p.output()),
        }
    }
}

/// One file being written.
struct FileWriter {
    key: String,
    records: u64,
    /// Uncompressed size (lines) or an estimate from the values (Parquet); deterministic.
    raw_bytes: u64,
    lines: Vec<u8>,
    rows: Vec<SinkRecord>,
    /// In a mutex only to be `Sync` (Parquet's writer is not); never locked across an await.
    encoder: Option<std::sync::Mutex<Encoder>>,
    /// Encoded bytes not uploaded yet.
    out: Vec<u8>,
    upload: Option<(String, Vec<CompletedPart>)>,
}

/// The open file set of one topic partition.
#[derive(Default)]
struct PartitionWriter {
    files: BTreeMap<String, FileWriter>,
    /// First offset of the open set.
    start: Option<i64>,
    records: u64,
    first_time: Option<i64>,
    /// Wall-clock time (ms) at which `rotate_schedule_interval` closes the set.
    deadline: Option<i64>,
    /// Offset after the last record written; earlier offsets delivered again are skipped.
    next: Option<i64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The next multiple of `interval` after `now`, aligned in `zone` (so a 1h schedule closes
/// files on the hour of local time).
fn next_boundary(now: i64, interval: u64, zone: Tz) -> i64 {
    let offset = zone
        .timestamp_millis_opt(now)
        .single()
        .map_or(0, |t| i64::from(t.offset().fix().local_minus_utc()) * 1000);
    let interval = interval as i64;
    let local = now + offset;
    (local.div_euclid(interval) + 1) * interval - offset
}

fn value_size(value: &sluice_connector_api::Value) -> u64 {
    use sluice_connector_api::Value;
    match value {
        Value::Null => 0,
        Value::Bytes(b) => b.len() as u64,
        Value::String(s) => s.len() as u64,
        Value::Struct(s) => s.iter().map(|(k, v)| k.len() as u64 + value_size(v)).sum(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| value_size(k) + value_size(v))
            .sum(),
        _ => 8,
    }
}

impl FileWriter {
    fn new(key: String, settings: &Settings, first: &SinkRecord) -> Result<Self, Error> {
        let compression = settings.config.compression;
        let encoder = match settings.config.format {
            Format::Parquet => Encoder::Parquet(Box::new(ParquetEncoder::new(
                first,
                compression,
                settings.config.part_size as usize,
            )?)),
            Format::Json | Format::Bytes => Encoder::Lines(Compressor::new(compression)?),
        };
        Ok(Self {
            key,
            records: 0,
            raw_bytes: 0,
            lines: Vec::new(),
            rows: Vec::new(),
            encoder: Some(std::sync::Mutex::new(encoder)),
            out: Vec::new(),
            upload: None,
        })
    }

    fn fits(&self, record: &SinkRecord) -> bool {
        let Some(encoder) = &self.encoder else {
            return true;
        };
        match &*encoder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Encoder::Parquet(p) => p.fits(record),
            Encoder::Lines(_) => true,
        }
    }

    fn append(&mut self, format: Format, record: SinkRecord) -> Result<(), Error> {
        self.records += 1;
        match format {
            Format::Json | Format::Bytes => {
                let before = self.lines.len();
                if format == Format::Json {
                    write_json_line(&record, &mut self.lines)?;
                } else {
                    write_bytes_line(&record, &mut self.lines)?;
                }
                self.raw_bytes += (self.lines.len() - before) as u64;
            }
            Format::Parquet => {
                self.raw_bytes += 32
                    + value_size(&record.key)
                    + value_size(&record.value)
                    + record
                        .headers
                        .iter()
                        .map(|h| (h.key.len() + h.value.as_ref().map_or(0, Vec::len)) as u64)
                        .sum::<u64>();
                self.rows.push(record);
            }
        }
        Ok(())
    }

    fn chunk_ready(&self) -> bool {
        self.lines.len() >= LINE_CHUNK_BYTES || self.rows.len() >= PARQUET_CHUNK_ROWS
    }

    /// Encodes (and compresses) what is buffered on a blocking thread; `finish` also closes the
    /// file's encoding.
    async fn encode(&mut self, finish: bool) -> Result<(), Error> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let mut encoder = encoder
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lines = std::mem::take(&mut self.lines);
        let rows = std::mem::take(&mut self.rows);
        let (encoder, out) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            match &mut encoder {
                Encoder::Lines(c) if !lines.is_empty() => c.write(&lines)?,
                Encoder::Parquet(p) if !rows.is_empty() => p.write(&rows)?,
                _ => {}
            }
            if finish {
                let out = match encoder {
                    Encoder::Lines(c) => c.finish()?,
                    Encoder::Parquet(p) => p.finish()?,
                };
                Ok((None, out))
            } else {
                let out = encoder.output();
                Ok((Some(encoder), out))
            }
        })
        .await
        .map_err(|e| Error::Data(format!("encoding thread failed: {e}")))??;
        self.encoder = encoder.map(std::sync::Mutex::new);
        self.out.extend_from_slice(&out);
        Ok(())
    }

    /// Uploads whole parts while at least `part_size` bytes wait (memory stays bounded).
    async fn upload_parts(&mut self, store: &Store, part_size: usize) -> Result<(), Error> {
        while self.out.len() >= part_size {
            let rest = self.out.split_off(part_size);
            let part = Bytes::from(std::mem::replace(&mut self.out, rest));
            self.upload_part(store, part).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, store: &Store, part: Bytes) -> Result<(), Error> {
        if self.upload.is_none() {
            let id = store.create_multipart(&self.key).await?;
            self.upload = Some((id, Vec::new()));
        }
        let Some((id, parts)) = self.upload.as_mut() else {
            return Ok(());
        };
        let number = parts.len() as i32 + 1;
        let done = store.upload_part(&self.key, id, number, part).await?;
        parts.push(done);
        Ok(())
    }

    /// Finishes the file and makes it visible: one PUT, or the last parts and the completion.
    async fn close(mut self, store: &Store, part_size: usize) -> Result<(), Error> {
        self.encode(true).await?;
        if self.upload.is_none() && self.out.len() < part_size {
            store
                .put(&self.key, Bytes::from(std::mem::take(&mut self.out)))
                .await?;
        } else {
            self.upload_parts(store, part_size).await?;
            if !self.out.is_empty() {
                let last = Bytes::from(std::mem::take(&mut self.out));
                self.upload_part(store, last).await?;
            }
            if let Some((id, parts)) = self.upload.take() {
                store.complete_multipart(&self.key, &id, parts).await?;
            }
        }
        debug!(key = %self.key, records = self.records, "object uploaded");
        Ok(())
    }

    async fn abort(self, store: &Store) {
        if let Some((id, _)) = &self.upload {
            store.abort_multipart(&self.key, id).await;
        }
    }
}

impl PartitionWriter {
    /// Uploads every file of the open set; afterwards everything written is durable.
    async fn close_set(&mut self, settings: &Settings, tp: &TopicPartition) -> Result<(), Error> {
        let part_size = settings.config.part_size as usize;
        let files = std::mem::take(&mut self.files);
        let count = files.len();
        for (_, file) in files {
            file.close(&settings.store, part_size).await?;
        }
        if count > 0 {
            info!(partition = %tp, start = self.start, records = self.records, files = count, "archived file set");
        }
        self.start = None;
        self.records = 0;
        self.first_time = None;
        self.deadline = None;
        Ok(())
    }

    async fn discard(&mut self, settings: &Settings) {
        for (_, file) in std::mem::take(&mut self.files) {
            file.abort(&settings.store).await;
        }
        self.start = None;
        self.records = 0;
    }

    /// Whether `record` must start a new set (checked before it is written).
    fn rotate_before(
        &self,
        settings: &Settings,
        record: &SinkRecord,
        encoded: &str,
        now: i64,
    ) -> bool {
        if self.start.is_none() {
            return false;
        }
        let config = &settings.config;
        if config.rotate_interval > 0
            && let (Some(first), Some(ts)) = (self.first_time, record.timestamp)
            && (ts - first >= config.rotate_interval as i64 || ts < first)
        {
            return true;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return true;
        }
        self.files.get(encoded).is_some_and(|f| !f.fits(record))
    }

    /// Whether the set is complete after a record was written.
    fn rotate_after(&self, settings: &Settings, encoded: &str) -> bool {
        let config = &settings.config;
        self.records >= config.flush_size
            || (config.max_file_bytes > 0
                && self
                    .files
                    .get(encoded)
                    .is_some_and(|f| f.raw_bytes >= config.max_file_bytes))
    }
}

#[async_trait]
impl SinkTask for S3SinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config: SinkConfig = config.parse()?;
        config.check().map_err(ConnectorError::config)?;
        let store = Store::connect(&config.connection).await?;
        let partitioner = Partitioner::from_config(&config)?;
        let zone = parse_zone(&config.timezone)?;
        info!(connector = %ctx.connector, task = ctx.task_id, bucket = %config.connection.bucket, format = ?config.format, "s3-sink task started");
        self.settings = Some(Settings {
            extension: extension(config.format, config.compression),
            config,
            store,
            partitioner,
            zone,
        });
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        let Some(settings) = self.settings.as_ref() else {
            return Err(ConnectorError::fatal("s3-sink task used before start"));
        };
        let config = &settings.config;
        let part_size = config.part_size as usize;
        let now = now_ms();
        for record in records {
            let tp = record.topic_partition();
            let writer = self.partitions.entry(tp.clone()).or_default();
            if writer.next.is_some_and(|n| record.offset < n) {
                continue;
            }
            writer.next = Some(record.offset + 1);
            let encoded = settings.partitioner.encode(&record, now)?;
            if writer.rotate_before(settings, &record, &encoded, now) {
                writer.close_set(settings, &tp).await?;
            }
            if writer.start.is_none() {
                writer.start = Some(record.offset);
                writer.first_time = record.timestamp;
                writer.deadline = (config.rotate_schedule_interval > 0)
                    .then(|| next_boundary(now, config.rotate_schedule_interval, settings.zone));
            }
            let file = match writer.files.entry(encoded.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let key = object_key(
                        &config.connection.topics_dir,
                        &record.topic,
                        &encoded,
                        record.partition,
                        record.offset,
                        settings.extension,
                    );
                    e.insert(FileWriter::new(key, settings, &record)?)
                }
            };
            file.append(config.format, record)?;
            if file.chunk_ready() {
                file.encode(false).await?;
                file.upload_parts(&settings.store, part_size).await?;
            }
            writer.records += 1;
            if writer.rotate_after(settings, &encoded) {
                writer.close_set(settings, &tp).await?;
            }
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let Some(settings) = self.settings.as_ref() else {
            return Err(ConnectorError::fatal("s3-sink task used before start"));
        };
        let now = now_ms();
        let mut durable = HashMap::with_capacity(offsets.len());
        for (tp, next) in offsets {
            let Some(writer) = self.partitions.get_mut(tp) else {
                continue;
            };
            // Scheduled rotation: a quiet partition's files still close on time.
            if writer.deadline.is_some_and(|d| now >= d) {
                writer.close_set(settings, tp).await?;
            }
            durable.insert(tp.clone(), writer.start.unwrap_or(*next));
        }
        Ok(durable)
    }

    /// Open files of revoked partitions are dropped (and their multipart uploads aborted):
    /// their offsets were not committed, so the next owner rewrites the same files.
    async fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let Some(settings) = self.settings.as_ref() else {
            return Ok(());
        };
        for tp in partitions {
            if let Some(mut writer) = self.partitions.remove(tp) {
                writer.discard(settings).await;
            }
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        let partitions: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        self.close(&partitions).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_boundaries_align_to_local_time() {
        let utc: Tz = "UTC".parse().unwrap();
        // 2024-01-01T10:20:00Z -> 11:00Z
        assert_eq!(
            next_boundary(1_704_104_400_000, 3_600_000, utc),
            1_704_106_800_000
        );
        // Kolkata is UTC+05:30: the next local hour is 10:30Z.
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            next_boundary(1_704_104_400_000, 3_600_000, kolkata),
            1_704_105_000_000
        );
    }
}
