//! The replication reader: a background task that takes the snapshot, then turns pgoutput
//! changes into records, hands them to the task in batches, and reports the confirmed LSN back
//! to Postgres when the task commits.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;

use pg_walstream::{
    ChangeEvent, ColumnValue, EventType, LogicalReplicationStream, ReplicationError,
    ReplicationSlotOptions, ReplicationStreamConfig, RowData, StreamingMode,
};
use sluice_connector_api::{
    ConnectorError, ErrorKind, Header, SourceOffset, SourcePartition, SourceRecord, Struct,
};
use sqlx::postgres::PgPool;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::catalog::{self, Types, captured};
use super::table::{
    Column, Naming, OP_CREATE, OP_DELETE, OP_TRUNCATE, OP_UPDATE, SourceInfo, Table, heartbeat,
};
use super::types::PgType;
use crate::config::CdcConfig;

/// Debezium's headers on the two events of a primary-key change: the delete names the new key,
/// the create the old one (each the key's fields as a JSON object).
const NEW_KEY_HEADER: &str = "__debezium.newkey";
const OLD_KEY_HEADER: &str = "__debezium.oldkey";

/// What the reader sends the task: a batch of records, or the error that stops it.
pub(crate) type Batch = Result<Vec<SourceRecord>, ConnectorError>;

/// How long a partial batch may wait before it is handed over.
const LINGER: Duration = Duration::from_millis(20);
/// Most events handled in a row before the loop looks at its timers and signals again.
const DRAIN_EVENTS: usize = 1024;
/// Most reconnect attempts after the stream's own retries gave up.
const MAX_RECONNECTS: u32 = 30;

/// Batches records for the task. The newest record is held back until the next one arrives or its
/// transaction ends, so the record that completes a transaction can carry the offset that lets
/// the slot advance past it.
pub(crate) struct Out {
    tx: mpsc::Sender<Batch>,
    partition: SourcePartition,
    batch: Vec<SourceRecord>,
    held: Option<SourceRecord>,
    max_batch: usize,
}

impl Out {
    pub(crate) fn new(
        tx: mpsc::Sender<Batch>,
        partition: SourcePartition,
        max_batch: usize,
    ) -> Self {
        Self {
            tx,
            partition,
            batch: Vec::with_capacity(max_batch),
            held: None,
            max_batch,
        }
    }

    pub(crate) fn partition(&self) -> &SourcePartition {
        &self.partition
    }

    fn add(&mut self, record: SourceRecord) {
        if let Some(previous) = self.held.replace(record) {
            self.batch.push(previous);
        }
    }

    /// Adds a record (held back until the next one). The caller hands over full batches.
    pub(crate) fn push(&mut self, record: SourceRecord) {
        self.add(record);
    }

    /// Hands over the batch if it is full.
    pub(crate) async fn flush_if_full(&mut self) -> Result<(), ConnectorError> {
        if self.full() {
            self.flush().await
        } else {
            Ok(())
        }
    }

    /// Adds a record that needs no later offset (a heartbeat).
    pub(crate) fn push_sealed(&mut self, record: SourceRecord) {
        if let Some(held) = self.held.take() {
            self.batch.push(held);
        }
        self.batch.push(record);
    }

    /// Stamps the held record with `offset` (the end of its transaction) and releases it;
    /// false when no record was held.
    pub(crate) fn seal(&mut self, offset: SourceOffset) -> bool {
        match self.held.take() {
            Some(mut record) => {
                record.source_offset = offset;
                self.batch.push(record);
                true
            }
            None => false,
        }
    }

    /// Hands the batch to the task. Cancel-safe: the batch stays here until a slot is reserved.
    pub(crate) async fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let permit = self
            .tx
            .reserve()
            .await
            .map_err(|_| ConnectorError::fatal("the task stopped reading changes"))?;
        permit.send(Ok(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.max_batch),
        )));
        Ok(())
    }

    pub(crate) fn full(&self) -> bool {
        self.batch.len() >= self.max_batch
    }
}

/// Shared between the task (which commits) and the reader (which tells Postgres).
#[derive(Debug, Default)]
pub(crate) struct Confirmed {
    pub(crate) lsn: AtomicU64,
    pub(crate) changed: Notify,
}

/// `temporary`: the slot disappears with the connection (`initial_only` leaves no slot behind).
pub(crate) fn stream_config(
    config: &CdcConfig,
    export_snapshot: bool,
    temporary: bool,
) -> ReplicationStreamConfig {
    let mut stream =
        ReplicationStreamConfig::builder(config.slot.clone(), config.publication.clone())
            .with_protocol_version(2)
            .with_streaming_mode(if config.stream_large_transactions {
                StreamingMode::On
            } else {
                StreamingMode::Off
            })
            .with_feedback_interval(Duration::from_secs(1))
            .with_existing_slot_required(false);
    if export_snapshot {
        stream = stream.with_slot_options(ReplicationSlotOptions {
            snapshot: Some("export".into()),
            temporary,
            ..Default::default()
        });
    }
    stream
}

pub(crate) fn replication_error(
    context: &str,
    e: pg_walstream::ReplicationError,
) -> ConnectorError {
    let kind = if e.is_transient() {
        ErrorKind::Retriable
    } else if matches!(e, pg_walstream::ReplicationError::Authentication(_)) {
        ErrorKind::Auth
    } else {
        ErrorKind::Fatal
    };
    ConnectorError::with_source(kind, format!("{context}: {e}"), e)
}

/// The server's system id and timeline.
fn identity(stream: &LogicalReplicationStream) -> (u64, u32) {
    (
        stream.server_identity().system_id(),
        stream.server_identity().timeline(),
    )
}

/// The streaming part of the reader.
pub(crate) struct Streamer {
    /// `None` between a lost connection and a successful reconnect.
    stream: Option<LogicalReplicationStream>,
    /// System id and timeline of the server first connected to: a reconnect must reach the same.
    identity: (u64, u32),
    conninfo: String,
    config: CdcConfig,
    pool: PgPool,
    naming: Naming,
    types: Types,
    source_schema: sluice_connector_api::SchemaRef,
    confirmed: Arc<Confirmed>,
    cancel: CancellationToken,
    out: Out,
    tables: HashMap<u32, Option<Arc<Table>>>,
    tx: Option<(u32, i64)>,
    /// End LSN of the last transaction whose records are all emitted.
    last_end: u64,
    /// Highest LSN put into an offset (what a heartbeat may advance past).
    emitted: u64,
    /// The in-progress transaction whose streamed changes are arriving now.
    streaming: Option<u32>,
    /// Changes of in-progress (streamed) transactions, kept until they commit or abort.
    spools: HashMap<u32, Spool>,
    spool_dir: std::path::PathBuf,
}

impl Streamer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stream: LogicalReplicationStream,
        conninfo: String,
        config: CdcConfig,
        pool: PgPool,
        naming: Naming,
        types: Types,
        source_schema: sluice_connector_api::SchemaRef,
        confirmed: Arc<Confirmed>,
        cancel: CancellationToken,
        out: Out,
        spool_dir: std::path::PathBuf,
    ) -> Self {
        let identity = identity(&stream);
        Self {
            stream: Some(stream),
            identity,
            conninfo,
            config,
            pool,
            naming,
            types,
            source_schema,
            confirmed,
            cancel,
            out,
            tables: HashMap::new(),
            tx: None,
            last_end: 0,
            emitted: 0,
            streaming: None,
            spools: HashMap::new(),
            spool_dir,
        }
    }

    pub(crate) async fn run(mut self) -> Result<(), ConnectorError> {
        // Streaming resumes after the slot's confirmed position: everything before it is done, so
        // records of the first (partial) transaction carry it as their resume point.
        self.last_end = catalog::slot(&self.pool, &self.config.slot)
            .await?
            .flatten()
            .unwrap_or(0);
        self.emitted = self.last_end;
        if let Some(stream) = self.stream.as_mut() {
            stream
                .start(None)
                .await
                .map_err(|e| replication_error("cannot start replication", e))?;
        }
        info!(slot = %self.config.slot, "streaming changes");
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis(self.config.heartbeat_interval));
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut linger_until: Option<Instant> = None;
        let mut reconnects = 0u32;
        loop {
            if self.out.full() {
                self.flush_with_feedback().await?;
                linger_until = None;
            }
            let Some(stream) = self.stream.as_mut() else {
                if self.cancel.is_cancelled() {
                    return Ok(());
                }
                reconnects += 1;
                if reconnects > MAX_RECONNECTS {
                    return Err(ConnectorError::retriable(format!(
                        "replication connection lost; {MAX_RECONNECTS} reconnect attempts failed"
                    )));
                }
                self.reconnect(reconnects).await?;
                continue;
            };
            let token = self.cancel.clone();
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Ok(()),
                // The task committed: tell Postgres now rather than at the next status interval.
                _ = self.confirmed.changed.notified() => self.send_feedback().await,
                _ = heartbeat.tick() => self.heartbeat().await?,
                _ = sleep_until(linger_until), if linger_until.is_some() => {
                    self.flush_with_feedback().await?;
                    linger_until = None;
                }
                // `next_event`, not the library's `next_event_with_retry`: a lost connection comes
                // back here as an error, and `stream_failed` drops the partial transaction and
                // reconnects on a fresh connection. The library's in-place recovery kept this
                // reader's state across a reconnect it never saw and once stopped delivering
                // after it while the walsender kept streaming (found by scripts/chaos.sh).
                event = stream.next_event(&token) => {
                    // Events that already arrived are handled here, without a trip through the
                    // select for each (which re-arms its timers and notifications every time).
                    let mut next = Some(event);
                    let mut handled = 0;
                    while let Some(event) = next.take() {
                        match event {
                            Ok(event) => {
                                reconnects = 0;
                                self.handle(event).await?;
                                if linger_until.is_none() && !self.out.batch.is_empty() {
                                    linger_until = Some(Instant::now() + LINGER);
                                }
                                handled += 1;
                                if handled < DRAIN_EVENTS && !self.out.full() {
                                    next = self
                                        .stream
                                        .as_mut()
                                        .and_then(|s| s.next_event(&token).now_or_never());
                                }
                            }
                            Err(e) => {
                                if self.stream_failed(e).await? {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// A failed replication stream: transient failures drop the connection (the loop reconnects
    /// and Postgres replays every transaction after the confirmed LSN); others end the task.
    /// `Ok(true)`: the stream ended because the task is stopping.
    async fn stream_failed(&mut self, e: ReplicationError) -> Result<bool, ConnectorError> {
        if e.is_cancelled() {
            return Ok(true);
        }
        // A connection the server closed (a restart) can also surface as a protocol error of
        // the COPY stream; a reconnect checks the slot and the server again and gives up after
        // MAX_RECONNECTS, so only what a new connection cannot fix ends the task here.
        let connection_lost = e.is_transient()
            || matches!(
                e,
                ReplicationError::Protocol(_) | ReplicationError::Buffer(_)
            );
        if !connection_lost {
            return Err(replication_error("replication stream failed", e));
        }
        warn!(error = %e, "replication connection lost; reconnecting");
        // Dropping the stream closes its connection, so the server releases the slot.
        self.stream = None;
        // The server replays every transaction after the confirmed LSN: drop the partial one.
        self.out.held = None;
        self.tx = None;
        self.streaming = None;
        for (_, spool) in self.spools.drain() {
            spool.discard().await;
        }
        Ok(false)
    }

    /// Reports the committed LSN to Postgres (also answers the walsender's keepalives).
    async fn send_feedback(&mut self) {
        let lsn = self.confirmed.lsn.load(Ordering::Acquire);
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        if lsn > 0 {
            stream.shared_lsn_feedback.update_flushed_lsn(lsn);
        }
        if let Err(e) = stream.send_feedback().await {
            debug!(error = %e, "status update not sent; the stream reports the connection problem");
        }
    }

    /// Hands over the batch; while the task is busy, keeps Postgres informed so the walsender
    /// does not time out.
    async fn flush_with_feedback(&mut self) -> Result<(), ConnectorError> {
        let mut keepalive = tokio::time::interval(Duration::from_secs(1));
        keepalive.tick().await;
        loop {
            tokio::select! {
                flushed = self.out.flush() => return flushed,
                _ = keepalive.tick() => {
                    let lsn = self.confirmed.lsn.load(Ordering::Acquire);
                    if let Some(stream) = self.stream.as_mut() {
                        if lsn > 0 {
                            stream.shared_lsn_feedback.update_flushed_lsn(lsn);
                        }
                        let _ = stream.send_feedback().await;
                    }
                }
                _ = self.cancel.cancelled() => return Ok(()),
            }
        }
    }

    /// One reconnect attempt after a backoff. It requires the existing slot (never creates one,
    /// which would skip every change since the confirmed LSN) on the same server and timeline.
    async fn reconnect(&mut self, attempt: u32) -> Result<(), ConnectorError> {
        let backoff = Duration::from_millis(500 * u64::from(attempt.min(20)));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = self.cancel.cancelled() => return Ok(()),
        }
        let config = stream_config(&self.config, false, false).with_existing_slot_required(true);
        let mut stream = match LogicalReplicationStream::new(&self.conninfo, config).await {
            Ok(stream) => stream,
            Err(e) if e.is_transient() => {
                warn!(error = %e, attempt, "reconnect failed; trying again");
                return Ok(());
            }
            Err(e) => return Err(replication_error("cannot reconnect", e)),
        };
        let identity = identity(&stream);
        if identity != self.identity {
            return Err(ConnectorError::fatal(format!(
                "reconnected to a different server or timeline (system {} timeline {}, was {} timeline {}): \
                 changes since the last confirmed LSN cannot be guaranteed; take a new snapshot",
                identity.0, identity.1, self.identity.0, self.identity.1
            )));
        }
        // The server replays from the slot's confirmed position, which may be older than what
        // this reader had emitted (Postgres does not save a slot whose confirmed position alone
        // moved when it shuts down): records of the replay resume from there, as at start.
        match catalog::slot(&self.pool, &self.config.slot).await {
            Ok(Some(Some(confirmed))) => {
                self.last_end = confirmed;
                self.emitted = confirmed;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, attempt, "cannot read the slot's position after reconnecting; trying again");
                return Ok(());
            }
        }
        match stream.start(None).await {
            Ok(()) => {
                info!(attempt, "replication reconnected");
                self.stream = Some(stream);
                Ok(())
            }
            // e.g. the old walsender still holds the slot until it notices the lost connection.
            Err(e) if e.is_transient() => {
                warn!(error = %e, attempt, "replication restart failed; trying again");
                Ok(())
            }
            Err(e) => Err(replication_error("cannot restart replication", e)),
        }
    }

    async fn heartbeat(&mut self) -> Result<(), ConnectorError> {
        if let Some(query) = &self.config.heartbeat_action_query {
            let limit = Duration::from_millis(self.config.heartbeat_interval);
            match tokio::time::timeout(
                limit,
                sqlx::query(sqlx::AssertSqlSafe(query.clone())).execute(&self.pool),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "heartbeat action query failed"),
                Err(_) => {
                    warn!("heartbeat action query did not finish within the heartbeat interval")
                }
            }
        }
        // Between transactions everything received is emitted, so the received position can be
        // confirmed once a record carrying it is committed.
        let current = self
            .stream
            .as_ref()
            .map_or(0, LogicalReplicationStream::current_lsn);
        if self.tx.is_none() && current > self.emitted {
            let record = heartbeat(&self.naming, self.out.partition(), current);
            self.out.push_sealed(record);
            self.emitted = current;
            self.flush_with_feedback().await?;
        }
        self.send_feedback().await;
        Ok(())
    }

    fn table(&self, oid: u32) -> Option<Arc<Table>> {
        self.tables.get(&oid).cloned().flatten()
    }

    async fn relation(
        &mut self,
        oid: u32,
        namespace: &str,
        name: &str,
        columns: &[pg_walstream::RelationColumn],
    ) -> Result<(), ConnectorError> {
        if !captured(&self.pool, &self.config, oid, namespace, name).await? {
            self.tables.insert(oid, None);
            return Ok(());
        }
        let catalog = catalog::columns(&self.pool, oid).await?;
        let pk: Vec<&str> = catalog
            .iter()
            .filter(|c| c.primary_key)
            .map(|c| c.name.as_str())
            .collect();
        if columns
            .iter()
            .any(|c| self.types.resolve(c.type_id, c.type_modifier).is_none())
        {
            self.types = Types::load(&self.pool).await?;
        }
        let columns = columns
            .iter()
            .map(|c| Column {
                name: c.name.to_string(),
                ty: self.types.resolve(c.type_id, c.type_modifier).unwrap_or_else(|| {
                    warn!(table = %format!("{namespace}.{name}"), column = %c.name, type_oid = c.type_id, "unknown column type; emitting its text");
                    PgType::Other(c.type_id.to_string())
                }),
                key: pk.contains(&c.name.as_ref()),
            })
            .collect();
        let table = Table::new(namespace, name, columns, &self.naming, &self.source_schema);
        self.tables.insert(oid, Some(Arc::new(table)));
        Ok(())
    }

    fn info(&self, lsn: u64) -> SourceInfo {
        let (xid, ts) = self.tx.unwrap_or((0, 0));
        SourceInfo {
            ts_ms: ts,
            snapshot: None,
            tx_id: Some(i64::from(xid)),
            lsn: Some(lsn as i64),
        }
    }

    fn offset(&self) -> SourceOffset {
        let xid = self.tx.map_or(0, |(x, _)| x);
        let mut offset = SourceOffset::new();
        offset.insert("lsn".to_owned(), self.last_end.into());
        offset.insert("txId".to_owned(), xid.into());
        offset
    }

    async fn handle(&mut self, event: ChangeEvent) -> Result<(), ConnectorError> {
        let is_change = matches!(
            event.event_type,
            EventType::Insert { .. }
                | EventType::Update { .. }
                | EventType::Delete { .. }
                | EventType::Truncate { .. }
        );
        if is_change {
            // Changes of a transaction still in progress wait in its spool until it commits.
            return match self.streaming.and_then(|xid| self.spools.get_mut(&xid)) {
                Some(spool) => spool.push(event, self.config.max_buffered_changes).await,
                None => self.change(event).await,
            };
        }
        match event.event_type {
            EventType::StreamStart { transaction_id, .. } => {
                self.streaming = Some(transaction_id);
                if !self.spools.contains_key(&transaction_id) {
                    let spool = Spool::new(&self.spool_dir, transaction_id).await?;
                    self.spools.insert(transaction_id, spool);
                }
            }
            EventType::StreamStop => self.streaming = None,
            EventType::StreamAbort {
                transaction_id,
                subtransaction_xid,
                ..
            } => {
                if transaction_id == subtransaction_xid {
                    if let Some(spool) = self.spools.remove(&transaction_id) {
                        spool.discard().await;
                    }
                } else if let Some(spool) = self.spools.get_mut(&transaction_id) {
                    spool.aborted.insert(subtransaction_xid);
                }
            }
            EventType::StreamCommit {
                transaction_id,
                end_lsn,
                commit_timestamp,
                ..
            } => {
                let spool = self.spools.remove(&transaction_id);
                self.tx = Some((transaction_id, commit_timestamp.timestamp_millis()));
                if let Some(mut spool) = spool {
                    while let Some(batch) = spool.next_batch().await? {
                        for change in batch {
                            self.change(change).await?;
                            if self.out.full() {
                                self.flush_with_feedback().await?;
                            }
                        }
                    }
                    spool.discard().await;
                }
                self.commit(transaction_id, end_lsn.0);
            }
            EventType::Begin {
                transaction_id,
                commit_timestamp,
                ..
            } => {
                self.tx = Some((transaction_id, commit_timestamp.timestamp_millis()));
            }
            EventType::Commit { end_lsn, .. } => {
                let xid = self.tx.map_or(0, |(x, _)| x);
                self.commit(xid, end_lsn.0);
            }
            EventType::Relation {
                relation_id,
                namespace,
                relation_name,
                columns,
                ..
            } => {
                self.relation(relation_id, &namespace, &relation_name, &columns)
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The end of a transaction: its last record carries the LSN the slot may advance to.
    fn commit(&mut self, xid: u32, end_lsn: u64) {
        let mut offset = SourceOffset::new();
        offset.insert("lsn".to_owned(), end_lsn.into());
        offset.insert("txId".to_owned(), xid.into());
        if self.out.seal(offset) {
            self.emitted = end_lsn;
        }
        self.last_end = end_lsn;
        self.tx = None;
    }

    /// A change event of the current transaction.
    fn record(
        &self,
        table: &Table,
        op: &'static str,
        before: Option<Struct>,
        after: Option<Struct>,
        lsn: u64,
    ) -> SourceRecord {
        table.event(
            op,
            before,
            after,
            &self.info(lsn),
            self.out.partition(),
            self.offset(),
        )
    }

    /// An update that changed the row's key, as Debezium emits it: a delete under the old key
    /// (header `__debezium.newkey`), its tombstone, and a create under the new key (header
    /// `__debezium.oldkey`). As one `u` under the new key, the old key would stay alive for every
    /// consumer that keeps state by key (a JDBC sink, a compacted topic).
    fn key_change(&mut self, table: &Table, before: Struct, after: Struct, lsn: u64) {
        let (old_key, new_key) = (table.key_json(&before), table.key_json(&after));
        let mut delete = self.record(table, OP_DELETE, Some(before), None, lsn);
        delete.headers.push(Header::new(NEW_KEY_HEADER, new_key));
        let tombstone = self.config.tombstones.then(|| table.tombstone(&delete));
        let mut create = self.record(table, OP_CREATE, None, Some(after), lsn);
        create.headers.push(Header::new(OLD_KEY_HEADER, old_key));
        self.out.push(delete);
        if let Some(tombstone) = tombstone {
            self.out.push(tombstone);
        }
        self.out.push(create);
    }

    /// One row change of a committed transaction (or one being replayed from its spool).
    async fn change(&mut self, event: ChangeEvent) -> Result<(), ConnectorError> {
        let lsn = event.lsn.0;
        match event.event_type {
            EventType::Insert {
                relation_oid, data, ..
            } => {
                if let Some(table) = self.table(relation_oid) {
                    let after = table.row(&values(&data), &self.naming.placeholder)?;
                    let record = self.record(&table, OP_CREATE, None, Some(after), lsn);
                    self.out.push(record);
                }
            }
            EventType::Update {
                relation_oid,
                old_data,
                new_data,
                ..
            } => {
                if let Some(table) = self.table(relation_oid) {
                    let old = old_data.as_ref().map(values);
                    let mut new = values(&new_data);
                    let before = old
                        .as_ref()
                        .map(|old| table.row(old, &self.naming.placeholder))
                        .transpose()?;
                    let after = table.row(&new, &self.naming.placeholder)?;
                    match before {
                        Some(before)
                            if old.as_ref().is_some_and(|old| table.key_changed(old, &new)) =>
                        {
                            // The create under the new key stands alone: an unchanged TOAST value
                            // it lacks comes from the old row where that has it (REPLICA IDENTITY
                            // FULL sends the old row whole); else it stays the placeholder.
                            let mut after = after;
                            if let Some(old) = &old
                                && new.len() < table.columns.len()
                            {
                                for (name, value) in old {
                                    if value.is_some() && !new.iter().any(|(n, _)| n == name) {
                                        new.push((name, *value));
                                    }
                                }
                                after = table.row(&new, &self.naming.placeholder)?;
                            }
                            self.key_change(&table, before, after, lsn);
                        }
                        before => {
                            let record = self.record(&table, OP_UPDATE, before, Some(after), lsn);
                            self.out.push(record);
                        }
                    }
                }
            }
            EventType::Delete {
                relation_oid,
                old_data,
                ..
            } => {
                if let Some(table) = self.table(relation_oid) {
                    let before = table.row(&values(&old_data), &self.naming.placeholder)?;
                    let record = self.record(&table, OP_DELETE, Some(before), None, lsn);
                    let tombstone = self.config.tombstones.then(|| table.tombstone(&record));
                    self.out.push(record);
                    if let Some(tombstone) = tombstone {
                        self.out.push(tombstone);
                    }
                }
            }
            EventType::Truncate { tables, .. } if self.config.truncate_events => {
                let captured: Vec<Arc<Table>> = self.tables.values().flatten().cloned().collect();
                for name in tables {
                    if let Some(table) = captured.iter().find(|t| t.full_name() == name.as_ref()) {
                        let record = self.record(table, OP_TRUNCATE, None, None, lsn);
                        self.out.push(record);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Column values of a row as text; unchanged TOAST columns are absent.
fn values(row: &RowData) -> Vec<(&str, Option<&str>)> {
    row.iter()
        .map(|(name, value)| {
            let text = match value {
                ColumnValue::Null => None,
                other => other.as_str(),
            };
            (name.as_ref(), text)
        })
        .collect()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Empties the spool directory of a task that starts: whatever an earlier run left there (killed
/// mid-transaction) belongs to transactions Postgres streams again from the slot's position. It
/// is made again at once, so a directory that cannot be written fails the start, not the first
/// large transaction.
pub(crate) async fn clean_spool_dir(dir: &std::path::Path) -> Result<(), ConnectorError> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(spool_error(
                &format!("cannot clean {} left by an earlier run", dir.display()),
                e,
            ));
        }
    }
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| spool_error(&format!("cannot create {}", dir.display()), e))
}

/// The changes of one in-progress transaction that Postgres streams before it commits: kept in
/// memory up to `max_buffered_changes`, the rest appended to a file, replayed in order at commit
/// (without the changes of aborted subtransactions) and dropped at abort.
struct Spool {
    memory: Vec<ChangeEvent>,
    path: std::path::PathBuf,
    /// Changes written to the file, and how many were read back.
    spilled: usize,
    reader: Option<tokio::io::Lines<tokio::io::BufReader<tokio::fs::File>>>,
    aborted: std::collections::HashSet<u32>,
}

fn spool_error(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> ConnectorError {
    ConnectorError::with_source(
        ErrorKind::Fatal,
        format!("transaction spool: {context}: {e}"),
        e,
    )
}

impl Spool {
    async fn new(dir: &std::path::Path, xid: u32) -> Result<Self, ConnectorError> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| spool_error("cannot create its directory", e))?;
        let path = dir.join(format!("{xid}.jsonl"));
        let _ = tokio::fs::remove_file(&path).await;
        Ok(Self {
            memory: Vec::new(),
            path,
            spilled: 0,
            reader: None,
            aborted: Default::default(),
        })
    }

    async fn push(&mut self, event: ChangeEvent, limit: usize) -> Result<(), ConnectorError> {
        self.memory.push(event);
        if self.memory.len() < limit {
            return Ok(());
        }
        use tokio::io::AsyncWriteExt;
        let mut text = String::new();
        for event in self.memory.drain(..) {
            text.push_str(
                &serde_json::to_string(&event)
                    .map_err(|e| spool_error("cannot encode a change", e))?,
            );
            text.push('\n');
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| spool_error("cannot open its file", e))?;
        file.write_all(text.as_bytes())
            .await
            .map_err(|e| spool_error("cannot write its file", e))?;
        self.spilled += limit;
        debug!(path = %self.path.display(), changes = self.spilled, "large transaction spooled to disk");
        Ok(())
    }

    /// The next changes in order (file first, then memory), without aborted subtransactions.
    async fn next_batch(&mut self) -> Result<Option<Vec<ChangeEvent>>, ConnectorError> {
        const BATCH: usize = 1024;
        if self.spilled > 0 {
            if self.reader.is_none() {
                use tokio::io::AsyncBufReadExt;
                let file = tokio::fs::File::open(&self.path)
                    .await
                    .map_err(|e| spool_error("cannot read its file", e))?;
                self.reader = Some(tokio::io::BufReader::new(file).lines());
            }
            let mut batch = Vec::with_capacity(BATCH);
            if let Some(lines) = self.reader.as_mut() {
                while batch.len() < BATCH {
                    match lines
                        .next_line()
                        .await
                        .map_err(|e| spool_error("cannot read its file", e))?
                    {
                        Some(line) => {
                            let event: ChangeEvent = serde_json::from_str(&line)
                                .map_err(|e| spool_error("cannot decode a change", e))?;
                            if !event.xid.is_some_and(|x| self.aborted.contains(&x)) {
                                batch.push(event);
                            }
                        }
                        None => {
                            self.spilled = 0;
                            break;
                        }
                    }
                }
            }
            if !batch.is_empty() || self.spilled > 0 {
                return Ok(Some(batch));
            }
        }
        if self.memory.is_empty() {
            return Ok(None);
        }
        let aborted = std::mem::take(&mut self.aborted);
        let batch: Vec<ChangeEvent> = self
            .memory
            .drain(..)
            .filter(|e| !e.xid.is_some_and(|x| aborted.contains(&x)))
            .collect();
        self.aborted = aborted;
        Ok(Some(batch))
    }

    async fn discard(self) {
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}
