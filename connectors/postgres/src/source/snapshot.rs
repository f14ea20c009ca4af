//! The initial snapshot: every captured table read inside the snapshot the replication slot
//! exported, so the stream continues exactly where the snapshot's view of the data ends.

use std::sync::Arc;

use serde_json::json;
use sluice_connector_api::ConnectorError;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tracing::info;

use super::catalog::{db_error, qualified};
use super::reader::Out;
use super::table::{Naming, OP_READ, SourceInfo, Table, heartbeat, now_ms};

/// Reads every table in the exported snapshot `snapshot`, emitting `r` events. The last record is
/// stamped `snapshot_completed`, so the snapshot counts as done only once all of it is stored.
///
/// Without an exported snapshot (a snapshot taken again over a slot kept from an interrupted one)
/// the tables are read in a snapshot of now; the stream then replays every change since the slot's
/// start, so each key still ends at the table's state.
pub(crate) async fn run(
    pool: &PgPool,
    snapshot: Option<&str>,
    consistent_lsn: u64,
    tables: &[Arc<Table>],
    chunk: i64,
    naming: &Naming,
    out: &mut Out,
) -> Result<(), ConnectorError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| db_error("cannot begin the snapshot transaction", e))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("cannot set the snapshot isolation level", e))?;
    if let Some(snapshot) = snapshot {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "''")
        )))
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("cannot import the slot's exported snapshot", e))?;
    }
    let offset = json!({"snapshot": true, "lsn": consistent_lsn})
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (n, table) in tables.iter().enumerate() {
        // A cursor of its own per table, fetched with an unprepared statement: sqlx caches a
        // prepared statement's result description by its text, so one `FETCH` text reused for
        // tables of other widths would decode rows with the first table's columns.
        let cursor = format!("sluice_snapshot_{n}");
        let select: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("\"{}\"::text", c.name.replace('"', "\"\"")))
            .collect();
        let sql = format!(
            "DECLARE {cursor} NO SCROLL CURSOR FOR SELECT {} FROM {}",
            select.join(", "),
            qualified(&table.schema, &table.name)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&format!("cannot read {}", table.full_name()), e))?;
        let info = SourceInfo {
            ts_ms: now_ms(),
            snapshot: Some("true"),
            tx_id: None,
            lsn: Some(consistent_lsn as i64),
        };
        let mut total = 0u64;
        loop {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "FETCH FORWARD {chunk} FROM {cursor}"
            )))
            .persistent(false)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| db_error(&format!("cannot read {}", table.full_name()), e))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let values = (0..table.columns.len())
                    .map(|i| row.try_get::<Option<String>, _>(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        db_error(&format!("cannot read a row of {}", table.full_name()), e)
                    })?;
                let named: Vec<(&str, Option<&str>)> = table
                    .columns
                    .iter()
                    .zip(&values)
                    .map(|(c, v)| (c.name.as_str(), v.as_deref()))
                    .collect();
                let after = table.row(&named, &naming.placeholder)?;
                let record = table.event(
                    OP_READ,
                    None,
                    Some(after),
                    &info,
                    out.partition(),
                    offset.clone(),
                );
                out.push(record);
                out.flush_if_full().await?;
            }
            total += rows.len() as u64;
            info!(table = %table.full_name(), rows = total, "snapshot progress");
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("CLOSE {cursor}")))
            .persistent(false)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("cannot close the snapshot cursor", e))?;
        info!(table = %table.full_name(), rows = total, "table snapshot done");
    }
    tx.commit()
        .await
        .map_err(|e| db_error("cannot end the snapshot transaction", e))?;
    let done = json!({"lsn": consistent_lsn, "snapshot_completed": true})
        .as_object()
        .cloned()
        .unwrap_or_default();
    if !out.seal(done.clone()) {
        // Nothing was read: a heartbeat record carries the completion.
        let mut record = heartbeat(naming, out.partition(), consistent_lsn);
        record.source_offset = done;
        out.push_sealed(record);
    }
    out.flush().await
}
