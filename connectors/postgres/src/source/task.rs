use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use pg_walstream::LogicalReplicationStream;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Result, SourceConnector, SourceOffset,
    SourcePartition, SourcePlugin, SourceRecord, SourceTask, SourceTaskContext,
};
use sqlx::postgres::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::catalog::{self, Types};
use super::reader::{Batch, Confirmed, Out, Streamer, replication_error, stream_config};
use super::snapshot;
use super::table::{Column, Naming, Table, source_schema};
use crate::config::{CdcConfig, LEGACY_PUBLICATION, LEGACY_SLOT, SnapshotMode, spec};

/// How long `poll` waits for changes before returning an empty batch.
const POLL_WAIT: Duration = Duration::from_millis(500);

pub struct PostgresCdcPlugin;

impl SourcePlugin for PostgresCdcPlugin {
    fn name(&self) -> &str {
        "postgres-cdc"
    }
    fn doc(&self) -> &str {
        "Change data capture from Postgres (snapshot + pgoutput streaming) as Debezium-style events, one topic per table."
    }
    fn spec(&self) -> ConfigSpec {
        spec()
    }
    fn connector(&self) -> Box<dyn SourceConnector> {
        Box::new(CdcConnector::default())
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(CdcTask::default())
    }
}

#[derive(Default)]
struct CdcConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SourceConnector for CdcConnector {
    /// Checks the database up front, so a wrong setup fails the connector with a clear reason.
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        let cdc: CdcConfig = config.parse()?;
        let pool = catalog::pool(&cdc).await?;
        let checked = catalog::check(&pool, &cdc).await;
        pool.close().await;
        checked?;
        self.config = config.clone();
        Ok(())
    }

    /// One replication slot is one ordered stream: always one task.
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok(vec![self.config.clone()])
    }
}

#[derive(Default)]
struct CdcTask {
    batches: Option<mpsc::Receiver<Batch>>,
    confirmed: Arc<Confirmed>,
    cancel: CancellationToken,
    reader: Option<JoinHandle<()>>,
    finished: bool,
}

fn partition(config: &CdcConfig) -> SourcePartition {
    json!({"server": config.topic_prefix})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// Whether a stored offset says the snapshot finished (or none was taken).
fn snapshot_done(offset: &Option<SourceOffset>) -> bool {
    offset
        .as_ref()
        .is_some_and(|o| o.get("snapshot") != Some(&serde_json::Value::Bool(true)))
}

async fn snapshot_tables(
    pool: &PgPool,
    config: &CdcConfig,
    naming: &Naming,
    types: &Types,
    source: &sluice_connector_api::SchemaRef,
) -> Result<Vec<Arc<Table>>> {
    let mut tables = Vec::new();
    for t in catalog::captured_tables(pool, config).await? {
        let columns = catalog::columns(pool, t.oid)
            .await?
            .into_iter()
            .map(|c| Column {
                ty: types
                    .resolve(c.type_oid, c.typmod)
                    .unwrap_or(super::types::PgType::Other(c.type_oid.to_string())),
                name: c.name,
                key: c.primary_key,
            })
            .collect();
        tables.push(Arc::new(Table::new(
            &t.schema, &t.name, columns, naming, source,
        )));
    }
    Ok(tables)
}

#[async_trait]
impl SourceTask for CdcTask {
    async fn start(&mut self, ctx: SourceTaskContext, config: &ConnectorConfig) -> Result<()> {
        let mut config: CdcConfig = config.parse()?;
        let (slot_given, publication_given) =
            (!config.slot.is_empty(), !config.publication.is_empty());
        config.name_defaults(&ctx.connector);
        let pool = catalog::pool(&config).await?;
        catalog::check(&pool, &config).await?;
        let partition = partition(&config);
        let stored = ctx.offsets.offset(&partition).await?;
        // Started before the names defaulted to the connector's: keep streaming from the slot it
        // has, or the changes in it would be lost.
        if !slot_given
            && stored.is_some()
            && catalog::slot(&pool, &config.slot).await?.is_none()
            && catalog::slot(&pool, LEGACY_SLOT).await?.is_some()
        {
            warn!(
                slot = LEGACY_SLOT,
                "this connector has offsets for the replication slot `sluice` (the default before slots were named after the connector); it keeps using it and, unless set, the publication `sluice_publication`: set `slot` and `publication` to say so"
            );
            config.slot = LEGACY_SLOT.to_owned();
            if !publication_given {
                config.publication = LEGACY_PUBLICATION.to_owned();
            }
        }
        catalog::ensure_publication(&pool, &config).await?;
        let mut slot = catalog::slot(&pool, &config.slot).await?;
        let initial_only = config.snapshot_mode == SnapshotMode::InitialOnly;
        if slot.is_some() && catalog::slot_lost(&pool, &config.slot).await? {
            // Postgres removed WAL the slot still needed (max_slot_wal_keep_size).
            if config.snapshot_mode == SnapshotMode::WhenNeeded || !snapshot_done(&stored) {
                warn!(slot = %config.slot, "the replication slot was invalidated by Postgres; dropping it to take a new snapshot");
                catalog::drop_slot(&pool, &config.slot).await?;
                slot = None;
            } else {
                return Err(ConnectorError::config(format!(
                    "replication slot {} was invalidated by Postgres (its WAL was removed, see max_slot_wal_keep_size): \
                     the changes since its position are lost; use snapshot_mode: when_needed to take a new snapshot",
                    config.slot
                )));
            }
        }
        let snapshot = match config.snapshot_mode {
            SnapshotMode::Never => false,
            SnapshotMode::Initial | SnapshotMode::InitialOnly => !snapshot_done(&stored),
            SnapshotMode::WhenNeeded => !snapshot_done(&stored) || slot.is_none(),
        };
        if !snapshot
            && slot.is_none()
            && stored.is_some()
            && matches!(
                config.snapshot_mode,
                SnapshotMode::Initial | SnapshotMode::Never
            )
        {
            return Err(ConnectorError::config(format!(
                "replication slot {} is gone but offsets exist: changes since then cannot be recovered; \
                 use snapshot_mode: when_needed to take a new snapshot",
                config.slot
            )));
        }
        // A snapshot over a slot that exists already (one interrupted by a crash, or offsets that
        // were lost) keeps the slot: it holds every change since it was created, which a new slot
        // would lose (a row the interrupted snapshot emitted and that was deleted since would stay
        // alive downstream). The tables are read again and then the slot's changes replayed.
        // initial_only streams nothing: its snapshot always comes from a new temporary slot.
        if snapshot && initial_only && slot.is_some() {
            catalog::drop_slot(&pool, &config.slot).await?;
            slot = None;
        }
        let export = snapshot && slot.is_none();
        if snapshot && !export {
            info!(slot = %config.slot, "taking the snapshot again over the existing replication slot; its changes are replayed after it");
        }
        if initial_only && !snapshot {
            info!("snapshot_mode initial_only: the snapshot was taken already; nothing to do");
            let (_, closed) = mpsc::channel(1);
            self.batches = Some(closed);
            self.finished = true;
            return Ok(());
        }
        let conninfo = catalog::replication_conninfo(&config)?;
        let mut stream =
            LogicalReplicationStream::new(&conninfo, stream_config(&config, export, initial_only))
                .await
                .map_err(|e| replication_error("cannot open a replication connection", e))?;
        stream
            .ensure_replication_slot()
            .await
            .map_err(|e| replication_error("cannot create the replication slot", e))?;
        let snapshot_name = if export {
            Some(stream.exported_snapshot_name().map(str::to_owned).ok_or_else(|| {
                ConnectorError::fatal("the replication slot did not export a snapshot (was it created concurrently?)")
            })?)
        } else {
            None
        };
        let spool_dir = ctx.work_dir.join("cdc-spool").join(&config.slot);
        super::reader::clean_spool_dir(&spool_dir).await?;
        let naming = Naming {
            topic_prefix: config.topic_prefix.clone(),
            database: catalog::database(&pool).await?,
            placeholder: config.toast_placeholder.clone(),
        };
        let types = Types::load(&pool).await?;
        let source = Arc::new(source_schema());
        let (tx, rx) = mpsc::channel(4);
        let mut out = Out::new(tx.clone(), partition, config.max_batch);
        let cancel = CancellationToken::new();
        self.cancel = cancel.clone();
        let confirmed = self.confirmed.clone();
        let reader = async move {
            if snapshot {
                let consistent = catalog::slot(&pool, &config.slot)
                    .await?
                    .flatten()
                    .unwrap_or(0);
                let tables = snapshot_tables(&pool, &config, &naming, &types, &source).await?;
                info!(tables = tables.len(), lsn = %pg_walstream::format_lsn(consistent), "snapshot started");
                snapshot::run(
                    &pool,
                    snapshot_name.as_deref(),
                    consistent,
                    &tables,
                    config.snapshot_chunk_size,
                    &naming,
                    &mut out,
                )
                .await?;
                info!("snapshot finished");
            }
            if config.snapshot_mode == SnapshotMode::InitialOnly {
                info!("snapshot_mode initial_only: not streaming");
                return Ok(());
            }
            Streamer::new(
                stream, conninfo, config, pool, naming, types, source, confirmed, cancel, out,
                spool_dir,
            )
            .run()
            .await
        };
        self.reader = Some(tokio::spawn(async move {
            if let Err(e) = reader.await {
                let _ = tx.send(Err(e)).await;
            }
        }));
        self.batches = Some(rx);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let Some(batches) = self.batches.as_mut() else {
            return Err(ConnectorError::fatal(
                "postgres-cdc task polled before start",
            ));
        };
        if self.finished {
            tokio::time::sleep(POLL_WAIT).await;
            return Ok(Vec::new());
        }
        match tokio::time::timeout(POLL_WAIT, batches.recv()).await {
            Ok(Some(batch)) => batch,
            Ok(None) => {
                // The reader ended: cleanly (initial_only done, or stopping), or by panicking.
                if let Some(reader) = self.reader.take()
                    && let Err(e) = reader.await
                {
                    return Err(ConnectorError::fatal(format!(
                        "the replication reader crashed: {e}"
                    )));
                }
                self.finished = true;
                Ok(Vec::new())
            }
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The records up to these offsets are in Kafka and the offsets are stored: only now may the
    /// slot's confirmed LSN move, and only to the end of a whole transaction.
    async fn commit(&mut self, offsets: &[(SourcePartition, SourceOffset)]) -> Result<()> {
        for (_, offset) in offsets {
            if offset.get("snapshot") == Some(&serde_json::Value::Bool(true)) {
                continue;
            }
            if let Some(lsn) = offset.get("lsn").and_then(serde_json::Value::as_u64)
                && self.confirmed.lsn.fetch_max(lsn, Ordering::AcqRel) < lsn
            {
                self.confirmed.changed.notify_one();
            }
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        self.cancel.cancel();
        if let Some(reader) = self.reader.take()
            && tokio::time::timeout(Duration::from_secs(10), reader)
                .await
                .is_err()
        {
            warn!("replication reader did not stop in time");
        }
        Ok(())
    }
}
