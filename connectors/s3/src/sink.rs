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
//!
//! Uploads run in the background while the task keeps consuming: full multipart parts as soon as
//! they are encoded, and a closed set's remaining bytes and completion. At most
//! [`UPLOADS_IN_FLIGHT`] run at once (that bounds the memory they hold). A closed set counts as
//! durable only once every upload of it, and of every set before it, succeeded.
//!
//! S3 away (a request still failing after the SDK's retries) is not a crash: the partition
//! whose upload failed drops what is not durable (aborting its uploads), asks the runtime to
//! deliver it again from the first offset that is not durable, and `put` answers retriable, so
//! the runtime backs off and retries for as long as `errors.retry_timeout` allows (by default
//! until S3 is back), without a task restart. Set boundaries are the same on re-consumption, so
//! the rewritten objects replace any the failed attempt left.
//!
//! `rotate_schedule_interval` closes sets on the wall clock, so a re-consumption closes them
//! elsewhere and its objects would not replace the earlier ones: with it on, a closed set's
//! object becomes visible only once every offset before the set is committed to Kafka (its
//! parts upload meanwhile), and the task asks for a commit as soon as a set is visible. At most
//! one set per partition is visible and uncommitted, and it starts at the committed offset: a
//! new owner or a restart writes that set again under the same names, so the archive still
//! holds every offset once. A partition whose sets wait for commits faster than they come is
//! refused for a moment (a retriable `put`), which bounds what the waiting sets hold.
//!
//! A record the partitioner cannot place goes to the runtime's error policy (`errors.tolerance`,
//! the dead-letter topic) through the task context's errant record reporter, as in every sink.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;
use chrono::{Offset, TimeZone};
use chrono_tz::Tz;
use sluice_connector_api::{
    CommitRequest, ConfigSpec, ConnectorConfig, ConnectorError, ErrantRecordReporter, ErrorKind,
    Result, RewindRequest, SinkConnector, SinkPlugin, SinkRecord, SinkTask, SinkTaskContext,
    TopicPartition,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{Format, SinkConfig, sink_spec};
use crate::error::Error;
use crate::format::{
    Compressor, ParquetEncoder, check_record, extension, write_bytes_line, write_json_line,
};
use crate::partition::{Partitioner, object_key, parse_zone};
use crate::store::Store;

/// Encode buffered JSON/bytes lines once they reach this size.
const LINE_CHUNK_BYTES: usize = 1024 * 1024;
/// Encode buffered Parquet rows once this many are waiting.
const PARQUET_CHUNK_ROWS: usize = 4096;
/// Parts and set closes uploading at once, per task.
const UPLOADS_IN_FLIGHT: usize = 4;
/// Closed sets of one partition that may wait for their offsets to be committed (scheduled
/// rotation) before `put` refuses that partition's records for a moment.
const SETS_WAITING_FOR_COMMIT: usize = 16;

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
    /// One permit per upload running in the background.
    uploads: Arc<Semaphore>,
}

impl Settings {
    async fn upload_permit(&self) -> OwnedSemaphorePermit {
        self.uploads
            .clone()
            .acquire_owned()
            .await
            .expect("the upload semaphore is never closed")
    }
}

/// A background upload; `Err` carries why it failed for good.
type Upload<T> = JoinHandle<Result<T, Error>>;

async fn finished<T>(upload: Upload<T>) -> Result<T, Error> {
    upload
        .await
        .map_err(|e| Error::Data(format!("upload task failed: {e}")))?
}

#[derive(Default)]
struct S3SinkTask {
    settings: Option<Settings>,
    partitions: HashMap<TopicPartition, PartitionWriter>,
    /// The runtime's error policy for records the task cannot archive (from the task context).
    errant_records: Option<Arc<dyn ErrantRecordReporter>>,
    /// Asks the runtime for a commit once a set waiting for one became visible.
    commits: CommitRequest,
    /// Asks the runtime to deliver a partition again after its taken records were dropped.
    rewinds: RewindRequest,
    /// S3 failed for a transient reason and has not answered since: `put` takes nothing until
    /// a probe succeeds, so the runtime's backoff grows and `errors.retry_timeout` counts.
    unavailable: bool,
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
    /// The multipart upload id and its parts, uploading or done, in order.
    upload: Option<(String, Vec<Upload<CompletedPart>>)>,
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
    /// Closed sets still uploading, oldest first, with their first offsets.
    closing: VecDeque<(i64, Upload<()>)>,
    /// The partition's committed offset as far as the task knows (from its first record, then
    /// from the runtime's commits); only with scheduled rotation, where a set's objects wait
    /// for it. Dropped when the partition is closed: the sets still waiting give up.
    committed: Option<watch::Sender<i64>>,
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
        match format {
            Format::Json | Format::Bytes => {
                let before = self.lines.len();
                let written = if format == Format::Json {
                    write_json_line(&record, &mut self.lines)
                } else {
                    write_bytes_line(&record, &mut self.lines)
                };
                if let Err(e) = written {
                    // No half line stays behind.
                    self.lines.truncate(before);
                    return Err(e);
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
        self.records += 1;
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
        let plain = matches!(
            &*encoder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Encoder::Lines(Compressor::Plain(_))
        );
        if plain {
            // Uncompressed lines are their own output: no encoding thread, no copy. A file that
            // filled a chunk is likely to fill the next: room for it up front saves regrowing.
            let room = if finish {
                0
            } else {
                self.lines.len() + self.lines.len() / 8
            };
            let lines = std::mem::replace(&mut self.lines, Vec::with_capacity(room));
            if self.out.is_empty() {
                self.out = lines;
            } else {
                self.out.extend_from_slice(&lines);
            }
            if !finish {
                self.encoder = Some(encoder);
            }
            return Ok(());
        }
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

    /// Starts uploading whole parts while at least `part_size` bytes wait (memory stays
    /// bounded: a part waits for a free upload slot).
    async fn upload_parts(&mut self, settings: &Settings, part_size: usize) -> Result<(), Error> {
        while self.out.len() >= part_size {
            let rest = self.out.split_off(part_size);
            let part = Bytes::from(std::mem::replace(&mut self.out, rest));
            let permit = settings.upload_permit().await;
            self.upload_part(&settings.store, part, Some(permit))
                .await?;
        }
        Ok(())
    }

    /// Starts one part's upload in the background (creating the multipart upload first).
    async fn upload_part(
        &mut self,
        store: &Store,
        part: Bytes,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), Error> {
        if self.upload.is_none() {
            let id = store.create_multipart(&self.key).await?;
            self.upload = Some((id, Vec::new()));
        }
        let Some((id, parts)) = self.upload.as_mut() else {
            return Ok(());
        };
        let number = parts.len() as i32 + 1;
        let (store, key, id) = (store.clone(), self.key.clone(), id.clone());
        parts.push(tokio::spawn(async move {
            let done = store.upload_part(&key, &id, number, part).await;
            drop(permit);
            done
        }));
        Ok(())
    }

    /// Finishes the file's encoding and starts uploading its last parts; nothing of it is
    /// visible until [`finish`](Self::finish). Runs in the background, holding one upload slot.
    async fn prepare(&mut self, store: &Store, part_size: usize) -> Result<(), Error> {
        self.encode(true).await?;
        if self.upload.is_some() || self.out.len() >= part_size {
            // The last parts need no slot of their own: the close holds one.
            while !self.out.is_empty() {
                let take = self.out.len().min(part_size);
                let rest = self.out.split_off(take);
                let part = Bytes::from(std::mem::replace(&mut self.out, rest));
                self.upload_part(store, part, None).await?;
            }
        }
        Ok(())
    }

    /// Makes the prepared file visible: one PUT, or the multipart upload's completion.
    async fn finish(mut self, store: &Store) -> Result<(), Error> {
        if let Some((id, uploads)) = self.upload.take() {
            let mut parts = Vec::with_capacity(uploads.len());
            let mut failure = None;
            for upload in uploads {
                match finished(upload).await {
                    Ok(part) => parts.push(part),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                store.abort_multipart(&self.key, &id).await;
                return Err(e);
            }
            store.complete_multipart(&self.key, &id, parts).await?;
        } else {
            store
                .put(&self.key, Bytes::from(std::mem::take(&mut self.out)))
                .await?;
        }
        debug!(key = %self.key, records = self.records, "object uploaded");
        Ok(())
    }

    async fn abort(self, store: &Store) {
        if let Some((id, uploads)) = &self.upload {
            for upload in uploads {
                upload.abort();
            }
            store.abort_multipart(&self.key, id).await;
        }
    }
}

impl PartitionWriter {
    /// Closes the open set: its files finish uploading in the background, and the set becomes
    /// durable when they all did (see [`reap`](Self::reap)).
    async fn close_set(
        &mut self,
        settings: &Settings,
        tp: &TopicPartition,
        commits: &CommitRequest,
    ) -> Result<(), Error> {
        let part_size = settings.config.part_size as usize;
        let files = std::mem::take(&mut self.files);
        let (start, records) = (self.start.take(), self.records);
        self.records = 0;
        self.first_time = None;
        self.deadline = None;
        let Some(start) = start else {
            return Ok(());
        };
        if files.is_empty() {
            return Ok(());
        }
        let permit = settings.upload_permit().await;
        let store = settings.store.clone();
        let tp = tp.clone();
        // With scheduled rotation: visible only once the offsets before the set are committed.
        let gate = self.committed.as_ref().map(watch::Sender::subscribe);
        let commits = gate.is_some().then(|| commits.clone());
        let upload = tokio::spawn(async move {
            let count = files.len();
            let mut prepared = Vec::with_capacity(count);
            let mut failure = None;
            for (_, mut file) in files {
                if failure.is_none()
                    && let Err(e) = file.prepare(&store, part_size).await
                {
                    failure = Some(e);
                }
                prepared.push(file);
            }
            drop(permit);
            if failure.is_none()
                && let Some(mut gate) = gate
                && gate
                    .wait_for(|committed| *committed >= start)
                    .await
                    .is_err()
            {
                failure = Some(Error::Data(format!(
                    "{tp} was closed before the offsets up to {start} were committed; the set starting there is written again by the partition's next owner"
                )));
            }
            if let Some(e) = failure {
                for file in prepared {
                    file.abort(&store).await;
                }
                return Err(e);
            }
            for file in prepared {
                file.finish(&store).await?;
            }
            info!(partition = %tp, start, records, files = count, "archived file set");
            // The set's end may be committed now, which lets the next set become visible.
            if let Some(commits) = commits {
                commits.request();
            }
            Ok(())
        });
        self.closing.push_back((start, upload));
        Ok(())
    }

    /// Takes the closed sets whose uploads finished, oldest first; fails with the first upload
    /// that failed for good, and the first offset of its set.
    async fn reap(&mut self) -> Result<(), (i64, Error)> {
        while self
            .closing
            .front()
            .is_some_and(|(_, upload)| upload.is_finished())
        {
            if let Some((start, upload)) = self.closing.pop_front() {
                finished(upload).await.map_err(|e| (start, e))?;
            }
        }
        Ok(())
    }

    /// The first offset that is not durable yet, if any record is not.
    fn pending_from(&self) -> Option<i64> {
        self.closing.front().map(|(start, _)| *start).or(self.start)
    }

    /// Drops the open set (aborting its multipart uploads) and waits for closed sets still
    /// uploading, so that nothing of this partition is written after its next owner started.
    async fn discard(&mut self, settings: &Settings, tp: &TopicPartition) {
        // Sets waiting for a commit give up (and abort their uploads).
        self.committed = None;
        for (_, file) in std::mem::take(&mut self.files) {
            file.abort(&settings.store).await;
        }
        self.start = None;
        self.records = 0;
        for (start, upload) in std::mem::take(&mut self.closing) {
            if let Err(e) = finished(upload).await {
                warn!(partition = %tp, start, error = %e, "a closed file set did not finish uploading; its records were not committed and are archived again by the next owner");
            }
        }
    }

    /// Drops everything of the partition that is not durable after S3 failed for a transient
    /// reason; returns the first offset to deliver again. The committed offset known to the gate
    /// stays: sets written again still become visible only after it.
    async fn start_over(
        &mut self,
        settings: &Settings,
        tp: &TopicPartition,
        failed_set: Option<i64>,
    ) -> Option<i64> {
        let from = failed_set.or(self.pending_from()).or(self.next);
        let committed = self.committed.as_ref().map(|c| *c.borrow());
        self.discard(settings, tp).await;
        *self = Self {
            committed: committed.map(|c| watch::channel(c).0),
            ..Self::default()
        };
        from
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
        let (store, reachable) = Store::connect_patiently(&config.connection).await?;
        self.unavailable = !reachable;
        let partitioner = Partitioner::from_config(&config)?;
        let zone = parse_zone(&config.timezone)?;
        info!(connector = %ctx.connector, task = ctx.task_id, bucket = %config.connection.bucket, format = ?config.format, "s3-sink task started");
        self.errant_records = ctx.errant_records;
        self.commits = ctx.commits;
        self.rewinds = ctx.rewinds;
        self.settings = Some(Settings {
            extension: extension(config.format, config.compression),
            uploads: Arc::new(Semaphore::new(UPLOADS_IN_FLIGHT)),
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
        let now = now_ms();
        if self.unavailable {
            match settings.store.probe().await {
                Ok(()) => {
                    info!("S3 answers again");
                    self.unavailable = false;
                }
                Err(e) if e.kind() == ErrorKind::Retriable => {
                    return Err(ConnectorError::with_source(
                        ErrorKind::Retriable,
                        format!("S3 is still unavailable: {e}"),
                        e,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut unavailable = None;
        for (tp, writer) in &mut self.partitions {
            if let Err((start, e)) = writer.reap().await {
                let (error, _) =
                    start_over(writer, settings, tp, Some(start), e, &self.rewinds).await?;
                unavailable.get_or_insert(error);
            }
        }
        if let Some(error) = unavailable {
            self.unavailable = true;
            return Err(error);
        }
        // Before anything of the batch is taken (a retry delivers it whole again, and the
        // runtime's flush meanwhile commits what the waiting sets need).
        if config.rotate_schedule_interval > 0
            && let Some((tp, writer)) = self.partitions.iter().find(|(tp, w)| {
                w.closing.len() >= SETS_WAITING_FOR_COMMIT
                    && records
                        .iter()
                        .any(|r| r.topic == tp.topic && r.partition == tp.partition)
            })
        {
            return Err(ConnectorError::retriable(format!(
                "{tp}: {} closed file sets are waiting for their offsets to be committed",
                writer.closing.len()
            )));
        }
        for record in records {
            let tp = record.topic_partition();
            let writer = self.partitions.entry(tp.clone()).or_default();
            if writer.next.is_some_and(|n| record.offset < n) {
                continue;
            }
            // The partition resumes at its committed offset: its first record is there.
            if config.rotate_schedule_interval > 0
                && writer.next.is_none()
                && writer.committed.is_none()
            {
                writer.committed = Some(watch::channel(record.offset).0);
            }
            let placed = settings
                .partitioner
                .encode(&record, now)
                .and_then(|encoded| check_record(config.format, &record).map(|()| encoded));
            let encoded = match placed {
                Ok(encoded) => encoded,
                // A record the partitioner cannot place (a tombstone or a value that is not a
                // struct under the field partitioner, no timestamp under the time partitioner)
                // or the format cannot hold (a struct as `bytes`) is a bad record like any
                // other: the pipeline's error policy decides, before anything of it is written. Once reported it is handled for good (dead-lettered
                // if so configured), so its offset may be committed with the records around it.
                Err(e) => {
                    let error = ConnectorError::from(e);
                    let Some(reporter) = &self.errant_records else {
                        return Err(error);
                    };
                    reporter.report(&record, error).await?;
                    writer.next = Some(record.offset + 1);
                    continue;
                }
            };
            // From here on a failure leaves written state behind that a retry of the batch would
            // not restore: the partition starts over from what is durable, or the task fails.
            if let Err(e) = take(writer, settings, &self.commits, &tp, encoded, record, now).await {
                let (error, _) = start_over(writer, settings, &tp, None, e, &self.rewinds).await?;
                self.unavailable = true;
                return Err(error);
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
                writer
                    .close_set(settings, tp, &self.commits)
                    .await
                    .map_err(upload_failed)?;
            }
            let from = match writer.reap().await {
                Ok(()) => writer.pending_from().unwrap_or(*next),
                Err((start, e)) => {
                    let (error, from) =
                        start_over(writer, settings, tp, Some(start), e, &self.rewinds).await?;
                    warn!(partition = %tp, %error, "archiving failed for now");
                    self.unavailable = true;
                    from.unwrap_or(start)
                }
            };
            durable.insert(tp.clone(), from);
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
                writer.discard(settings, tp).await;
            }
        }
        Ok(())
    }

    /// Lets sets waiting for these commits become visible (scheduled rotation).
    async fn committed(&mut self, offsets: &HashMap<TopicPartition, i64>) {
        for (tp, offset) in offsets {
            if let Some(gate) = self.partitions.get(tp).and_then(|w| w.committed.as_ref()) {
                gate.send_if_modified(|committed| {
                    let advanced = *offset > *committed;
                    if advanced {
                        *committed = *offset;
                    }
                    advanced
                });
            }
        }
    }

    async fn stop(&mut self) -> Result<()> {
        let partitions: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        self.close(&partitions).await
    }
}

/// Writes one record into its partition's open set (closing sets as the rotation rules say).
async fn take(
    writer: &mut PartitionWriter,
    settings: &Settings,
    commits: &CommitRequest,
    tp: &TopicPartition,
    encoded: String,
    record: SinkRecord,
    now: i64,
) -> Result<(), Error> {
    let config = &settings.config;
    writer.next = Some(record.offset + 1);
    if writer.rotate_before(settings, &record, &encoded, now) {
        writer.close_set(settings, tp, commits).await?;
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
        file.upload_parts(settings, config.part_size as usize)
            .await?;
    }
    writer.records += 1;
    if writer.rotate_after(settings, &encoded) {
        writer.close_set(settings, tp, commits).await?;
    }
    Ok(())
}

/// After `error` while `tp` had records taken: S3 away for now (after the SDK's retries) makes
/// the partition start over from what is durable, delivered again by the runtime, and comes
/// back as the retriable error for `put`; anything else fails the task (which restarts from the
/// committed offsets).
async fn start_over(
    writer: &mut PartitionWriter,
    settings: &Settings,
    tp: &TopicPartition,
    failed_set: Option<i64>,
    error: Error,
    rewinds: &RewindRequest,
) -> Result<(ConnectorError, Option<i64>)> {
    if error.kind() != ErrorKind::Retriable {
        return Err(upload_failed(error));
    }
    let from = writer.start_over(settings, tp, failed_set).await;
    if let Some(from) = from {
        rewinds.rewind(tp.clone(), from);
    }
    let again = from.map_or_else(String::new, |o| format!(" from offset {o}"));
    let message = format!("{error}; {tp} is archived again{again} once S3 answers");
    Ok((
        ConnectorError::with_source(ErrorKind::Retriable, message, error),
        from,
    ))
}

/// A failure after records were taken into files that retrying will not fix: the task fails and
/// resumes from the committed offsets when restarted.
fn upload_failed(e: Error) -> ConnectorError {
    let message = format!(
        "{e}; the task stops, and on restart resumes from the last committed offset (nothing is lost)"
    );
    ConnectorError::with_source(sluice_connector_api::ErrorKind::Fatal, message, e)
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
