//! `postgres-cdc`: every change of chosen Postgres tables as Debezium-style events.
//!
//! The task creates the publication and the replication slot when missing, takes an initial
//! snapshot inside the snapshot the slot exported (so nothing is missed or doubled between
//! snapshot and stream), then streams pgoutput changes. Each table goes to
//! `<topic_prefix>.<schema>.<table>`; keys are the primary key as a struct; values are the
//! Debezium envelope `{before, after, source, op, ts_ms}` with Connect schemas.
//!
//! Offsets: one source partition `{"server": <topic_prefix>}`; the offset carries the LSN up to
//! which everything is emitted. The slot's confirmed LSN is advanced only in `commit`, after the
//! records are in Kafka and the offsets are stored, and only to the end of a whole transaction.
//! After a crash the slot replays every transaction after that point (at least once).

mod config;
mod error;
mod sink;
mod source;

use sluice_connector_api::Registry;

pub use config::{CdcConfig, InsertMode, PrimaryKeyMode, SinkConfig, SnapshotMode};
pub use error::{Error, Result};
pub use sink::PostgresSinkPlugin;
pub use source::PostgresCdcPlugin;
#[doc(hidden)]
pub use source::parse_column_text;

/// Registers `postgres-cdc` and `postgres-sink`.
pub fn register(registry: &mut Registry) {
    registry.add_source(PostgresCdcPlugin);
    registry.add_sink(PostgresSinkPlugin);
}
