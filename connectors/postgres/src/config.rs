use serde::Deserialize;
use sluice_connector_api::{ConfigSpec, FieldKind, Validator};

/// Slot and publication names left out are `sluice_<connector name>`: one of each per connector,
/// so connectors on one database never share (and rewrite) each other's.
const DEFAULT_NAME_PREFIX: &str = "sluice_";
/// The slot and publication every connector defaulted to before they were named after it.
pub(crate) const LEGACY_SLOT: &str = "sluice";
pub(crate) const LEGACY_PUBLICATION: &str = "sluice_publication";
/// Postgres truncates identifiers longer than this.
const MAX_IDENTIFIER: usize = 63;
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
    /// Replication slot name (created if missing); empty until [`CdcConfig::name_defaults`] fills
    /// it in from the connector's name.
    #[serde(default)]
    pub slot: String,
    /// Publication name (created if missing, for `tables` or all tables; tables are only ever
    /// added to it); defaulted like `slot`.
    #[serde(default)]
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
        .maybe("slot", FieldKind::String, "Replication slot name (created if missing); default sluice_<connector name>, one per connector.")
        .check(Validator::Custom(std::sync::Arc::new(identifier)))
        .maybe(
            "publication",
            FieldKind::String,
            "Publication name (created if missing; tables are only ever added to it, so it may be shared); default sluice_<connector name>.",
        )
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

impl CdcConfig {
    /// Fills in the slot and publication names the config left out, from the connector's name.
    pub(crate) fn name_defaults(&mut self, connector: &str) {
        if self.slot.is_empty() {
            self.slot = default_name(connector);
        }
        if self.publication.is_empty() {
            self.publication = default_name(connector);
        }
    }
}

/// `sluice_<name>` as a Postgres identifier: lowercase letters, digits and `_`. A name that had to
/// be changed to fit (other characters, or too long) gets a hash of the original, so two
/// connectors whose names differ only there still get names of their own.
fn default_name(connector: &str) -> String {
    let plain: String = connector
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    let name = format!("{DEFAULT_NAME_PREFIX}{plain}");
    if plain == connector && name.len() <= MAX_IDENTIFIER {
        return name;
    }
    // FNV-1a: stable across builds and platforms (std's hasher is not).
    let hash = connector.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("_{:08x}", hash as u32);
    let keep = MAX_IDENTIFIER - suffix.len();
    format!("{}{suffix}", &name[..name.len().min(keep)])
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

pub(crate) const DEFAULT_SINK_BATCH: i64 = 1_000;
pub(crate) const DEFAULT_TABLE_NAME_FORMAT: &str = "${topic}";
pub(crate) const DEFAULT_SCHEMA: &str = "public";

/// How `postgres-sink` writes a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsertMode {
    /// `INSERT`: a row whose key exists already fails the batch.
    Insert,
    /// `INSERT ... ON CONFLICT (key) DO UPDATE`: idempotent, so redelivery after a crash is safe.
    Upsert,
    /// `UPDATE ... WHERE key = ...`: rows that do not exist are left alone.
    Update,
}

/// Where `postgres-sink` finds a row's primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryKeyMode {
    /// No key: rows are only inserted.
    None,
    /// The record key: the fields of a struct key, or one column (`primary_key_fields`) for a
    /// primitive key.
    RecordKey,
    /// The value fields named in `primary_key_fields`.
    RecordValue,
}

/// Configuration of `postgres-sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct SinkConfig {
    /// Topics to read.
    pub topics: Vec<String>,
    /// Connection URL, `postgres://user@host:port/db`; the password is better given in `password`.
    pub url: String,
    /// Password for the connection (secret).
    pub password: Option<sluice_connector_api::Secret>,
    /// TLS: disable, prefer or require.
    pub ssl_mode: String,
    pub insert_mode: InsertMode,
    pub primary_key_mode: PrimaryKeyMode,
    /// Key columns: which fields of a struct key or of the value, or the column of a primitive key.
    pub primary_key_fields: Vec<String>,
    /// Delete rows on Debezium `op: d` events (and tombstones, see `delete_on_tombstone`).
    pub delete_enabled: bool,
    /// With `delete_enabled`, a record with a null value deletes the row of its key.
    pub delete_on_tombstone: bool,
    /// Truncate the table on Debezium `op: t` events.
    pub truncate_enabled: bool,
    /// Table name: `${topic}` and the capture groups of `topic_pattern` (`${1}`, `${name}`) are
    /// replaced; `schema.table` or just `table`.
    pub table_name_format: String,
    /// Regular expression every topic must match; its groups can be used in `table_name_format`.
    pub topic_pattern: Option<String>,
    /// Schema of table names without one.
    pub schema: String,
    /// Create missing tables from the record schemas.
    pub auto_create: bool,
    /// Add missing columns (nullable) from the record schemas.
    pub auto_evolve: bool,
    /// Most records written in one transaction.
    pub batch_size: usize,
    /// Value `postgres-cdc` gives unchanged TOAST columns: such columns are left as they are.
    pub toast_placeholder: String,
}

pub(crate) fn sink_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("topics", FieldKind::List, "Topics to read.")
        .check(Validator::NonEmpty)
        .required("url", FieldKind::String, "Connection URL, postgres://user@host:port/db (put the password in `password`).")
        .check(Validator::NonEmpty)
        .maybe("password", FieldKind::String, "Password for the connection.")
        .secret()
        .optional("ssl_mode", FieldKind::String, "prefer", "TLS: disable, prefer or require.")
        .check(Validator::one_of(["disable", "prefer", "require"]))
        .optional(
            "insert_mode",
            FieldKind::String,
            "upsert",
            "`insert` (plain INSERT), `upsert` (INSERT ... ON CONFLICT on the primary key DO UPDATE: redelivery after a crash is harmless) or `update` (UPDATE of existing rows only).",
        )
        .check(Validator::one_of(["insert", "upsert", "update"]))
        .optional(
            "primary_key_mode",
            FieldKind::String,
            "record_key",
            "Where the primary key comes from: `record_key` (the fields of a struct key, or the one column in `primary_key_fields` for a primitive key), `record_value` (the value fields in `primary_key_fields`) or `none` (insert only).",
        )
        .check(Validator::one_of(["none", "record_key", "record_value"]))
        .optional(
            "primary_key_fields",
            FieldKind::List,
            serde_json::json!([]),
            "Key columns: a subset of a struct key's fields (empty: all of them), the column of a primitive key, or the value fields of `record_value`.",
        )
        .optional(
            "delete_enabled",
            FieldKind::Bool,
            true,
            "Delete the row of a Debezium `op: d` event (and of a tombstone, see `delete_on_tombstone`); needs primary_key_mode record_key.",
        )
        .optional(
            "delete_on_tombstone",
            FieldKind::Bool,
            true,
            "With delete_enabled, a record with a null value (a tombstone) deletes the row of its key; off, tombstones are skipped.",
        )
        .optional("truncate_enabled", FieldKind::Bool, false, "Truncate the table on a Debezium `op: t` event (otherwise skipped).")
        .optional(
            "table_name_format",
            FieldKind::String,
            DEFAULT_TABLE_NAME_FORMAT,
            "Table of a record: `${topic}` and the groups of `topic_pattern` (`${1}`, `${name}`) are replaced; the result is `schema.table` or `table` (in `schema`).",
        )
        .check(Validator::NonEmpty)
        .maybe(
            "topic_pattern",
            FieldKind::String,
            "Regular expression every topic must match (whole name); its capture groups can be used in table_name_format, e.g. `shop\\.public\\.(.*)` with `${1}`.",
        )
        .check(Validator::Custom(std::sync::Arc::new(|v| {
            regex::Regex::new(v.as_str().unwrap_or_default())
                .map(drop)
                .map_err(|e| format!("expected a regular expression: {e}"))
        })))
        .optional("schema", FieldKind::String, DEFAULT_SCHEMA, "Schema of table names that do not name one.")
        .check(Validator::NonEmpty)
        .optional("auto_create", FieldKind::Bool, false, "Create a missing table from the record schema (key columns as primary key).")
        .optional("auto_evolve", FieldKind::Bool, false, "Add columns the record has and the table lacks, as nullable columns.")
        .optional(
            "batch_size",
            FieldKind::Int,
            DEFAULT_SINK_BATCH,
            "Most records written in one transaction; what `put` receives is written once this many are waiting, the rest at the next flush.",
        )
        .check(Validator::range(1, 1_000_000))
        .optional(
            "toast_placeholder",
            FieldKind::String,
            DEFAULT_PLACEHOLDER,
            "Value a CDC event gives a large column it did not send (unchanged TOAST value): such columns keep what the table has.",
        )
}

impl SinkConfig {
    /// Checks that the fields fit together; errors name the fields.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.primary_key_mode == PrimaryKeyMode::None && self.insert_mode != InsertMode::Insert {
            problems.push(
                "config.insert_mode: upsert and update need a primary key; set primary_key_mode to record_key or record_value, or insert_mode insert".to_owned(),
            );
        }
        if self.primary_key_mode == PrimaryKeyMode::RecordValue
            && self.primary_key_fields.is_empty()
        {
            problems.push(
                "config.primary_key_fields: required with primary_key_mode record_value".to_owned(),
            );
        }
        if self.delete_enabled && self.primary_key_mode != PrimaryKeyMode::RecordKey {
            problems.push(
                "config.delete_enabled: deletes find rows by the record key; set primary_key_mode record_key or delete_enabled false".to_owned(),
            );
        }
        if let Err(e) = crate::sink::TableNamer::new(self) {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod sink_tests {
    use super::*;
    use serde_json::json;

    fn validate(input: serde_json::Value) -> Result<SinkConfig, Vec<String>> {
        let config = sink_spec()
            .validate(input.as_object().expect("object"))
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let parsed: SinkConfig = config.parse().map_err(|e| vec![e.to_string()])?;
        parsed.check().map_err(|e| vec![e])?;
        Ok(parsed)
    }

    #[test]
    fn defaults_are_an_idempotent_upsert_by_record_key() {
        let config = validate(json!({"topics": ["t"], "url": "postgres://h/db"})).expect("valid");
        assert_eq!(config.insert_mode, InsertMode::Upsert);
        assert_eq!(config.primary_key_mode, PrimaryKeyMode::RecordKey);
        assert!(config.delete_enabled && config.delete_on_tombstone);
        assert_eq!(config.table_name_format, "${topic}");
        assert_eq!(config.batch_size, 1000);
    }

    #[test]
    fn bad_fields_are_named() {
        let errors = validate(json!({
            "topics": ["t"], "url": "postgres://h/db", "insert_mode": "merge",
            "topic_pattern": "(", "batch_size": 0,
        }))
        .unwrap_err();
        let fields: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            ["insert_mode", "topic_pattern", "batch_size"],
            "{errors:?}"
        );
        assert!(errors[0].contains("insert, upsert, update"), "{errors:?}");

        let errors = validate(json!({
            "topics": ["t"], "url": "postgres://h/db", "primary_key_mode": "none",
            "table_name_format": "${2}",
        }))
        .unwrap_err();
        assert!(
            errors[0].contains("config.insert_mode: upsert and update need a primary key"),
            "{errors:?}"
        );
        assert!(errors[0].contains("config.delete_enabled:"), "{errors:?}");
        assert!(
            errors[0].contains("config.table_name_format: unknown placeholder `${2}`"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_password_is_masked_and_never_printed() {
        let input = json!({"topics": ["t"], "url": "postgres://h/db", "password": "s3cr3t"});
        let config = validate(input.clone()).expect("valid");
        assert!(!format!("{config:?}").contains("s3cr3t"));
        let masked = sink_spec().mask(input.as_object().expect("object"));
        assert_eq!(masked["password"], json!(sluice_connector_api::MASK));
    }
}

#[cfg(test)]
mod cdc_tests {
    use super::*;

    fn parsed(input: serde_json::Value) -> CdcConfig {
        spec()
            .validate(input.as_object().expect("object"))
            .expect("valid")
            .parse()
            .expect("parses")
    }

    #[test]
    fn slot_and_publication_default_to_the_connector_name() {
        let mut config = parsed(serde_json::json!({"url": "postgres://h/db", "topic_prefix": "p"}));
        config.name_defaults("orders");
        assert_eq!(
            (config.slot.as_str(), config.publication.as_str()),
            ("sluice_orders", "sluice_orders")
        );
        // Given names stay as they are.
        let mut config = parsed(serde_json::json!({
            "url": "postgres://h/db", "topic_prefix": "p", "slot": "s1", "publication": "p1",
        }));
        config.name_defaults("orders");
        assert_eq!(
            (config.slot.as_str(), config.publication.as_str()),
            ("s1", "p1")
        );
    }

    #[test]
    fn default_names_are_identifiers_and_stay_apart() {
        let names = [
            "Orders-CDC",
            "orders.cdc",
            "orders_cdc",
            &"x".repeat(100),
            &"x".repeat(99),
        ];
        let defaults: Vec<String> = names.iter().map(|n| default_name(n)).collect();
        for name in &defaults {
            assert!(identifier(&serde_json::json!(name)).is_ok(), "{name}");
        }
        let distinct: std::collections::HashSet<&String> = defaults.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{defaults:?}");
    }
}
