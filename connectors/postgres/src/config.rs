use serde::Deserialize;
use sluice_connector_api::{ConfigSpec, FieldKind, Validator};

pub(crate) const DEFAULT_SLOT: &str = "sluice";
pub(crate) const DEFAULT_PUBLICATION: &str = "sluice_publication";
pub(crate) const DEFAULT_HEARTBEAT_MS: i64 = 10_000;
pub(crate) const DEFAULT_MAX_BATCH: i64 = 2_048;
pub(crate) const DEFAULT_SNAPSHOT_CHUNK: i64 = 10_000;
pub(crate) const DEFAULT_PLACEHOLDER: &str = "__debezium_unavailable_value";

/// When the initial snapshot runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Snapshot when no offsets exist yet, then stream.
    Initial,
    /// Never snapshot: stream changes from the slot's position.
    Never,
    /// Snapshot, then stop producing (no streaming).
    InitialOnly,
    /// Snapshot when no offsets exist or the slot is gone, then stream.
    WhenNeeded,
}

/// Configuration of `postgres-cdc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct CdcConfig {
    /// Connection URL, `postgres://user@host:port/db`; the password is better given in `password`.
    pub url: String,
    /// Password for the connection (secret).
    pub password: Option<String>,
    /// Replication slot name (created if missing).
    pub slot: String,
    /// Publication name (created if missing, for `tables` or all tables).
    pub publication: String,
    /// Tables to capture, `schema.table`; empty means every table in the publication.
    pub tables: Vec<String>,
    /// Tables to leave out.
    pub exclude_tables: Vec<String>,
    /// When to run the initial snapshot.
    pub snapshot_mode: SnapshotMode,
    /// Rows read per snapshot query.
    pub snapshot_chunk_size: i64,
    /// Topic names are `<topic_prefix>.<schema>.<table>`.
    pub topic_prefix: String,
    /// How often to report progress and emit a heartbeat record on quiet databases (ms).
    pub heartbeat_interval: u64,
    /// SQL run at every heartbeat, e.g. an UPDATE on a heartbeat table, so quiet databases keep WAL moving.
    pub heartbeat_action_query: Option<String>,
    /// Emit a tombstone (null value) after each delete.
    pub tombstones: bool,
    /// Emit truncate events (op `t`).
    pub truncate_events: bool,
    /// Most records one poll returns.
    pub max_batch: usize,
    /// Value of unchanged TOAST columns.
    pub toast_placeholder: String,
    /// TLS: disable, prefer or require.
    pub ssl_mode: String,
    /// Let Postgres stream large transactions while they run (protocol 2 `streaming`); Sluice
    /// keeps their changes until commit. Off: Postgres spills them and sends them at commit.
    pub stream_large_transactions: bool,
    /// Changes of one in-progress transaction kept in memory before the rest go to a file.
    pub max_buffered_changes: usize,
}

pub(crate) fn spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("url", FieldKind::String, "Connection URL, postgres://user@host:port/db (put the password in `password`).")
        .check(Validator::NonEmpty)
        .maybe("password", FieldKind::String, "Password for the connection.")
        .secret()
        .optional("slot", FieldKind::String, DEFAULT_SLOT, "Replication slot name (created if missing).")
        .check(Validator::Custom(std::sync::Arc::new(identifier)))
        .optional("publication", FieldKind::String, DEFAULT_PUBLICATION, "Publication name (created if missing).")
        .check(Validator::Custom(std::sync::Arc::new(identifier)))
        .optional("tables", FieldKind::List, serde_json::json!([]), "Tables to capture, schema.table; empty means all tables.")
        .optional("exclude_tables", FieldKind::List, serde_json::json!([]), "Tables to leave out, schema.table.")
        .optional(
            "snapshot_mode",
            FieldKind::String,
            "initial",
            "initial (snapshot when there are no offsets, then stream), never, initial_only, when_needed.",
        )
        .check(Validator::one_of(["initial", "never", "initial_only", "when_needed"]))
        .optional("snapshot_chunk_size", FieldKind::Int, DEFAULT_SNAPSHOT_CHUNK, "Rows read per snapshot query.")
        .check(Validator::range(1, 10_000_000))
        .required("topic_prefix", FieldKind::String, "Topic names are <topic_prefix>.<schema>.<table>.")
        .check(Validator::NonEmpty)
        .optional(
            "heartbeat_interval",
            FieldKind::Duration,
            DEFAULT_HEARTBEAT_MS,
            "How often to report progress and emit a heartbeat record on quiet databases.",
        )
        .check(Validator::min(100))
        .maybe("heartbeat_action_query", FieldKind::String, "SQL run at every heartbeat so quiet databases keep WAL moving.")
        .optional("tombstones", FieldKind::Bool, true, "Emit a tombstone (null value) after each delete.")
        .optional("truncate_events", FieldKind::Bool, true, "Emit truncate events (op t).")
        .optional("max_batch", FieldKind::Int, DEFAULT_MAX_BATCH, "Most records one poll returns.")
        .check(Validator::range(1, 1_000_000))
        .optional("toast_placeholder", FieldKind::String, DEFAULT_PLACEHOLDER, "Value of unchanged TOAST columns.")
        .optional("ssl_mode", FieldKind::String, "prefer", "TLS: disable, prefer or require.")
        .check(Validator::one_of(["disable", "prefer", "require"]))
        .optional(
            "stream_large_transactions",
            FieldKind::Bool,
            true,
            "Let Postgres stream large transactions while they run; Sluice keeps their changes (memory, then disk) until commit.",
        )
        .optional(
            "max_buffered_changes",
            FieldKind::Int,
            50_000,
            "Changes of one in-progress transaction kept in memory before the rest are written to a file.",
        )
        .check(Validator::range(1, 10_000_000))
}

fn identifier(value: &serde_json::Value) -> Result<(), String> {
    let s = value.as_str().unwrap_or_default();
    if !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(())
    } else {
        Err(format!(
            "expected 1-63 lowercase letters, digits or `_`, got {value}"
        ))
    }
}
