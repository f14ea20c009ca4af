//! `postgres-sink`: the plugin, connector and task.
//!
//! `put` turns records into changes (reporting records that cannot become one to the errant
//! record reporter) and keeps them; once `batch_size` are waiting, and at every `flush`, they
//! are written in one transaction. `flush` reports the offsets it was given only after that
//! transaction committed, so a Kafka offset never passes a row that is not in the database.
//! After a crash the records since the last commit are written again: with `upsert` (the
//! default) that is harmless.

use std::collections::HashMap;

use async_trait::async_trait;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, ErrorKind, Result, SinkConnector, SinkPlugin,
    SinkRecord, SinkTask, SinkTaskContext, TopicPartition,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use tracing::{info, warn};

use super::record::{Change, Decoder};
use super::table::{TableId, TableNamer};
use super::write::{Batch, Writer};
use crate::config::{SinkConfig, sink_spec};
use crate::error::Error;

pub struct PostgresSinkPlugin;

impl SinkPlugin for PostgresSinkPlugin {
    fn name(&self) -> &str {
        "postgres-sink"
    }
    fn doc(&self) -> &str {
        "Writes records to Postgres tables: insert, upsert (ON CONFLICT on the key) or update, deletes from tombstones and Debezium `op: d` events. Reads the events of `postgres-cdc` as they are, and flat records. Table names from a `${topic}` template with an optional regex; optional auto-create and auto-evolve from record schemas. One transaction per batch; offsets are committed only after it commits."
    }
    fn spec(&self) -> ConfigSpec {
        sink_spec()
    }
    fn connector(&self) -> Box<dyn SinkConnector> {
        Box::new(PostgresSinkConnector::default())
    }
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(PostgresSinkTask::default())
    }
}

fn parse(config: &ConnectorConfig) -> Result<SinkConfig> {
    let parsed: SinkConfig = config.parse()?;
    parsed.check().map_err(ConnectorError::config)?;
    Ok(parsed)
}

#[derive(Default)]
struct PostgresSinkConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SinkConnector for PostgresSinkConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        parse(config)?;
        self.config = config.clone();
        Ok(())
    }

    /// Tasks share one consumer group; each writes the partitions it is assigned.
    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok((0..max_tasks.max(1)).map(|_| self.config.clone()).collect())
    }
}

/// A decoded record waiting to be written (kept whole for the dead-letter path).
struct Pending {
    record: SinkRecord,
    table: TableId,
    change: Change,
}

struct State {
    ctx: SinkTaskContext,
    decoder: Decoder,
    namer: TableNamer,
    writer: Writer,
    batch_size: usize,
    pending: Vec<Pending>,
}

#[derive(Default)]
struct PostgresSinkTask {
    state: Option<State>,
}

impl PostgresSinkTask {
    fn state(&mut self) -> Result<&mut State> {
        self.state
            .as_mut()
            .ok_or_else(|| ConnectorError::fatal("postgres-sink task used before start"))
    }
}

fn connect_options(config: &SinkConfig) -> Result<PgConnectOptions> {
    let mut options: PgConnectOptions = config.url.parse().map_err(|e| {
        ConnectorError::config(format!(
            "config.url: expected postgres://user@host:port/database: {e}"
        ))
    })?;
    if let Some(password) = config.password.as_ref().filter(|p| !p.expose().is_empty()) {
        options = options.password(password.expose());
    }
    let ssl = match config.ssl_mode.as_str() {
        "disable" => PgSslMode::Disable,
        "require" => PgSslMode::Require,
        _ => PgSslMode::Prefer,
    };
    // UTC sessions: Kafka Connect timestamps are UTC instants.
    Ok(options
        .ssl_mode(ssl)
        .options([("TimeZone", "UTC")])
        .application_name("sluice-sink"))
}

impl State {
    /// Writes what is pending in one transaction; on failure it stays pending.
    async fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for p in &self.pending {
            batch.add(&p.table, p.change.clone());
        }
        match self.writer.write(&batch).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Data => self.write_one_by_one(e).await?,
            Err(e) => return Err(e.into()),
        }
        self.pending.clear();
        Ok(())
    }

    /// The database refused a value somewhere in the batch: each change in its own transaction,
    /// so the records refused are found and go through the pipeline's `errors` policy (the
    /// dead-letter topic, or the task fails naming the record).
    async fn write_one_by_one(&mut self, first: Error) -> Result<()> {
        warn!(connector = %self.ctx.connector, task = self.ctx.task_id, error = %first, "postgres-sink batch refused; writing its records one by one to find the bad ones");
        for p in &self.pending {
            let mut batch = Batch::default();
            batch.add(&p.table, p.change.clone());
            match self.writer.write(&batch).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Data => {
                    let message = format!(
                        "{} offset {}: {e}",
                        p.record.topic_partition(),
                        p.record.offset
                    );
                    let error = ConnectorError::with_source(ErrorKind::Data, message, e);
                    match &self.ctx.errant_records {
                        Some(reporter) => reporter.report(&p.record, error).await?,
                        None => return Err(error),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Turns records into pending changes; a record that cannot become one goes to the
    /// errant-record reporter, or fails the put when there is none.
    async fn decode(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        for record in records {
            let change = match self.decoder.decode(&record) {
                Ok(change) => change,
                Err(message) => {
                    let error: ConnectorError = Error::Record {
                        location: format!("{} offset {}", record.topic_partition(), record.offset),
                        message,
                    }
                    .into();
                    match &self.ctx.errant_records {
                        Some(reporter) => {
                            reporter.report(&record, error).await?;
                            continue;
                        }
                        None => return Err(error),
                    }
                }
            };
            if change == Change::Skip {
                continue;
            }
            let table = self.namer.table(&record.topic)?;
            self.pending.push(Pending {
                record,
                table,
                change,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl SinkTask for PostgresSinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config = parse(config)?;
        let namer = TableNamer::new(&config).map_err(ConnectorError::config)?;
        let options = connect_options(&config)?;
        let pool_options = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(30));
        let pool = match pool_options.clone().connect_with(options.clone()).await {
            Ok(pool) => pool,
            Err(e) => {
                let error = Error::database("cannot connect to Postgres", e);
                // Postgres away for now is no reason to fail the start (and burn a restart):
                // the writes connect when it is back, retried like any transient failure.
                // Refused credentials and bad settings still fail here, with the reason.
                if error.kind() != ErrorKind::Retriable {
                    return Err(error.into());
                }
                warn!(connector = %ctx.connector, task = ctx.task_id, %error, "Postgres cannot be reached now; starting anyway, writes wait for it");
                pool_options.connect_lazy_with(options)
            }
        };
        info!(connector = %ctx.connector, task = ctx.task_id, mode = ?config.insert_mode, "postgres-sink task started");
        self.state = Some(State {
            ctx,
            decoder: Decoder::new(&config),
            namer,
            writer: Writer::new(
                pool,
                config.insert_mode,
                config.auto_create,
                config.auto_evolve,
            ),
            batch_size: config.batch_size,
            pending: Vec::new(),
        });
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        let state = self.state()?;
        let before = state.pending.len();
        let result = async {
            state.decode(records).await?;
            if state.pending.len() >= state.batch_size {
                state.write_pending().await?;
            }
            Ok::<_, ConnectorError>(())
        }
        .await;
        if result.is_err() {
            // These records are delivered again (retriable) or the task fails; what earlier
            // puts left pending stays.
            state.pending.truncate(before);
        }
        result
    }

    async fn flush(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let state = self.state()?;
        match state.write_pending().await {
            Ok(()) => Ok(offsets.clone()),
            // Nothing is committed now; the next put or flush writes the batch again.
            Err(e) if e.kind() == ErrorKind::Retriable => {
                warn!(connector = %state.ctx.connector, task = state.ctx.task_id, error = %e, "postgres-sink flush failed; will retry");
                Ok(HashMap::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Pending changes of revoked partitions are dropped: their next owner reads them again
    /// from the last commit (writing them here could land after that owner's newer rows).
    async fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        let state = self.state()?;
        state
            .pending
            .retain(|p| !partitions.contains(&p.record.topic_partition()));
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(state) = self.state.take() {
            state.writer.pool().close().await;
        }
        Ok(())
    }
}
