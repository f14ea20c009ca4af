//! A captured table: its columns and types, the Connect schemas of its keys and Debezium
//! envelopes, and how rows become records.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;
use sluice_connector_api::{
    ConnectorError, FieldName, Schema, SchemaRef, SourceOffset, SourcePartition, SourceRecord,
    Struct, Value,
};
use tracing::warn;

use super::types::PgType;

/// One column.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) ty: PgType,
    pub(crate) key: bool,
}

/// Values of the `source` block that do not change from event to event.
#[derive(Debug, Clone)]
struct SourceFixed {
    name: Value,
    db: Value,
    schema: Value,
    table: Value,
}

/// Fields of the `source` block, per event.
#[derive(Debug, Clone, Default)]
pub(crate) struct SourceInfo {
    pub(crate) ts_ms: i64,
    pub(crate) snapshot: Option<&'static str>,
    pub(crate) tx_id: Option<i64>,
    pub(crate) lsn: Option<i64>,
}

/// Names shared by every table of one connector.
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    pub(crate) topic_prefix: String,
    pub(crate) database: String,
    pub(crate) placeholder: String,
}

/// A captured table with its schemas.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) columns: Vec<Column>,
    pub(crate) topic: String,
    /// Column names as struct field names, shared by every row (same order as `columns`).
    fields: Vec<FieldName>,
    /// The strings of the `source` block that are the same for every event of this table.
    source_fixed: SourceFixed,
    key_schema: Option<SchemaRef>,
    envelope_schema: SchemaRef,
    /// Columns whose values failed to parse were already warned about.
    warned: std::sync::Mutex<HashSet<String>>,
}

pub(crate) const OP_READ: &str = "r";
pub(crate) const OP_CREATE: &str = "c";
pub(crate) const OP_UPDATE: &str = "u";
pub(crate) const OP_DELETE: &str = "d";
pub(crate) const OP_TRUNCATE: &str = "t";

/// Debezium's Postgres `source` block schema.
pub(crate) fn source_schema() -> Schema {
    Schema::struct_builder()
        .name("io.debezium.connector.postgresql.Source")
        .field("version", Schema::string())
        .field("connector", Schema::string())
        .field("name", Schema::string())
        .field("ts_ms", Schema::int64())
        .field(
            "snapshot",
            Schema::string()
                .optional()
                .named("io.debezium.data.Enum")
                .versioned(1)
                .with_parameter("allowed", "true,last,false,incremental")
                .with_default(Value::String("false".into())),
        )
        .field("db", Schema::string())
        .field("sequence", Schema::string().optional())
        .field("schema", Schema::string())
        .field("table", Schema::string())
        .field("txId", Schema::int64().optional())
        .field("lsn", Schema::int64().optional())
        .field("xmin", Schema::int64().optional())
        .build()
}

impl Table {
    pub(crate) fn new(
        schema: &str,
        name: &str,
        columns: Vec<Column>,
        naming: &Naming,
        source: &SchemaRef,
    ) -> Self {
        let base = format!("{}.{schema}.{name}", naming.topic_prefix);
        let keys: Vec<&Column> = columns.iter().filter(|c| c.key).collect();
        let key_schema = (!keys.is_empty()).then(|| {
            let mut b = Schema::struct_builder().name(format!("{base}.Key"));
            for c in &keys {
                b = b.field(c.name.clone(), c.ty.schema(false));
            }
            Arc::new(b.build())
        });
        // Non-key columns are optional: a delete under REPLICA IDENTITY DEFAULT only carries the key.
        let mut value = Schema::struct_builder().name(format!("{base}.Value"));
        for c in &columns {
            value = value.field(c.name.clone(), c.ty.schema(!c.key));
        }
        let value_schema = Arc::new(value.build().optional());
        let envelope = Schema::struct_builder()
            .name(format!("{base}.Envelope"))
            .version(1)
            .field_ref("before", value_schema.clone())
            .field_ref("after", value_schema.clone())
            .field_ref("source", source.clone())
            .field("op", Schema::string())
            .field("ts_ms", Schema::int64().optional())
            .build();
        let fields = columns
            .iter()
            .map(|c| FieldName::from(Arc::<str>::from(c.name.as_str())))
            .collect();
        let source_fixed = SourceFixed {
            name: Value::String(naming.topic_prefix.clone()),
            db: Value::String(naming.database.clone()),
            schema: Value::String(schema.to_owned()),
            table: Value::String(name.to_owned()),
        };
        Self {
            schema: schema.to_owned(),
            name: name.to_owned(),
            topic: base,
            fields,
            source_fixed,
            columns,
            key_schema,
            envelope_schema: Arc::new(envelope),
            warned: std::sync::Mutex::new(HashSet::new()),
        }
    }

    pub(crate) fn full_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// A row from named text values; a column missing from `values` is an unchanged TOAST value.
    pub(crate) fn row(
        &self,
        values: &[(&str, Option<&str>)],
        placeholder: &str,
    ) -> Result<Struct, ConnectorError> {
        let mut row = Struct::with_capacity(self.columns.len());
        for (i, (column, field)) in self.columns.iter().zip(&self.fields).enumerate() {
            // Values come in column order unless TOAST left some out: look there first.
            let found = match values.get(i) {
                Some(v) if v.0 == column.name => Some(*v),
                _ => values
                    .iter()
                    .find(|(name, _)| *name == column.name)
                    .copied(),
            };
            let value = match found {
                None if column.ty.toastable() => column.ty.placeholder(placeholder),
                None | Some((_, None)) => Value::Null,
                Some((_, Some(text))) => match column.ty.parse(text) {
                    Ok(v) => v,
                    // A key must be exact: a null key would merge unrelated rows downstream.
                    Err(e) if column.key => {
                        return Err(ConnectorError::data(format!(
                            "{}: key column {}: {e}",
                            self.full_name(),
                            column.name
                        )));
                    }
                    Err(e) => {
                        self.warn_once(&column.name, &e);
                        Value::Null
                    }
                },
            };
            row.push(field.clone(), value);
        }
        Ok(row)
    }

    fn warn_once(&self, column: &str, error: &str) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.insert(column.to_owned()) {
            warn!(table = %self.full_name(), column, error, "value cannot be represented; emitting null (warned once per column)");
        }
    }

    /// Whether an update moved the row to another key: a key column whose new text differs from
    /// the old. A key column missing from the new values (an unchanged TOAST value) is unchanged,
    /// and so is every column of a table without a key. An old key column that is NULL is not
    /// known (REPLICA IDENTITY USING INDEX sends only the index's columns): not a change.
    pub(crate) fn key_changed(
        &self,
        old: &[(&str, Option<&str>)],
        new: &[(&str, Option<&str>)],
    ) -> bool {
        fn text<'a>(values: &[(&str, Option<&'a str>)], name: &str) -> Option<Option<&'a str>> {
            values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
        self.columns.iter().filter(|c| c.key).any(|c| {
            match (text(old, &c.name), text(new, &c.name)) {
                (Some(Some(old)), Some(new)) => Some(old) != new,
                _ => false,
            }
        })
    }

    /// The key of `row` as a JSON object of its fields (the value of Debezium's key headers).
    pub(crate) fn key_json(&self, row: &Struct) -> Vec<u8> {
        self.key_of(row).to_plain_json_bytes()
    }

    fn key_of(&self, row: &Struct) -> Value {
        if self.key_schema.is_none() {
            return Value::Null;
        }
        let mut key = Struct::new();
        for (c, field) in self.columns.iter().zip(&self.fields).filter(|(c, _)| c.key) {
            key.put(field, row.get(&c.name).cloned().unwrap_or(Value::Null));
        }
        Value::Struct(key)
    }

    fn source_value(&self, info: &SourceInfo) -> Value {
        let fixed = &self.source_fixed;
        Value::Struct(
            Struct::with_capacity(12)
                .and("version", concat!("sluice-", env!("CARGO_PKG_VERSION")))
                .and("connector", "postgresql")
                .and("name", fixed.name.clone())
                .and("ts_ms", info.ts_ms)
                .and("snapshot", info.snapshot.map(str::to_owned))
                .and("db", fixed.db.clone())
                .and("sequence", Value::Null)
                .and("schema", fixed.schema.clone())
                .and("table", fixed.table.clone())
                .and("txId", info.tx_id)
                .and("lsn", info.lsn)
                .and("xmin", Value::Null),
        )
    }

    /// A Debezium change event.
    pub(crate) fn event(
        &self,
        op: &'static str,
        before: Option<Struct>,
        after: Option<Struct>,
        info: &SourceInfo,
        partition: &SourcePartition,
        offset: SourceOffset,
    ) -> SourceRecord {
        let key = match (&after, &before) {
            (Some(row), _) | (None, Some(row)) => self.key_of(row),
            (None, None) => Value::Null,
        };
        let now = now_ms();
        let envelope = Struct::with_capacity(5)
            .and("before", before.map_or(Value::Null, Value::Struct))
            .and("after", after.map_or(Value::Null, Value::Struct))
            .and("source", self.source_value(info))
            .and("op", op)
            .and("ts_ms", now);
        let mut record = SourceRecord::new(
            self.topic.clone(),
            Some(self.envelope_schema.clone()),
            Value::Struct(envelope),
            partition.clone(),
            offset,
        );
        if !key.is_null() {
            record = record.with_key(self.key_schema.clone(), key);
        }
        record.timestamp = Some(info.ts_ms);
        record
    }

    /// The tombstone that follows a delete: same key, null value, so compaction drops the key.
    pub(crate) fn tombstone(&self, delete: &SourceRecord) -> SourceRecord {
        let mut record = delete.clone();
        record.value_schema = None;
        record.value = Value::Null;
        record
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The heartbeat record that lets the slot advance on a quiet database: Debezium's shape, on
/// `__sluice-heartbeat.<prefix>`.
pub(crate) fn heartbeat(naming: &Naming, partition: &SourcePartition, lsn: u64) -> SourceRecord {
    let key_schema = Arc::new(
        Schema::struct_builder()
            .name("io.debezium.connector.common.ServerNameKey")
            .field("serverName", Schema::string())
            .build(),
    );
    let value_schema = Arc::new(
        Schema::struct_builder()
            .name("io.debezium.connector.common.Heartbeat")
            .field("ts_ms", Schema::int64())
            .build(),
    );
    let offset = json!({"lsn": lsn}).as_object().cloned().unwrap_or_default();
    SourceRecord::new(
        format!("__sluice-heartbeat.{}", naming.topic_prefix),
        Some(value_schema),
        Value::Struct(Struct::new().with("ts_ms", now_ms())),
        partition.clone(),
        offset,
    )
    .with_key(
        Some(key_schema),
        Value::Struct(Struct::new().with("serverName", naming.topic_prefix.clone())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let column = |name: &str, ty: PgType, key: bool| Column {
            name: name.to_owned(),
            ty,
            key,
        };
        let naming = Naming {
            topic_prefix: "p".into(),
            database: "db".into(),
            placeholder: "__unavailable".into(),
        };
        Table::new(
            "public",
            "t",
            vec![
                column("k1", PgType::Int4, true),
                column("v", PgType::Text, false),
                column("k2", PgType::Text, true),
            ],
            &naming,
            &Arc::new(source_schema()),
        )
    }

    #[test]
    fn a_key_change_is_a_changed_key_column_only() {
        let t = table();
        let old = [("k1", Some("1")), ("v", Some("a")), ("k2", Some("x"))];
        // Another value column: not a key change (REPLICA IDENTITY FULL sends the whole old row).
        assert!(!t.key_changed(
            &old,
            &[("k1", Some("1")), ("v", Some("b")), ("k2", Some("x"))]
        ));
        // Either column of a composite key.
        assert!(t.key_changed(
            &old,
            &[("k1", Some("2")), ("v", Some("a")), ("k2", Some("x"))]
        ));
        assert!(t.key_changed(
            &old,
            &[("k1", Some("1")), ("v", Some("a")), ("k2", Some("y"))]
        ));
        // A key column left out of the new row (an unchanged TOAST value) is unchanged.
        assert!(!t.key_changed(&old, &[("k1", Some("1")), ("v", Some("a"))]));
        // An old key column sent as NULL (an identity index without it) is not known.
        let partial = [("k1", None), ("v", Some("a")), ("k2", Some("x"))];
        assert!(!t.key_changed(
            &partial,
            &[("k1", Some("2")), ("v", Some("a")), ("k2", Some("x"))]
        ));
    }

    #[test]
    fn key_headers_hold_the_key_fields_as_json() {
        let t = table();
        let row = t
            .row(
                &[("k1", Some("7")), ("v", Some("a")), ("k2", Some("x\"y"))],
                "",
            )
            .expect("row");
        let json: serde_json::Value = serde_json::from_slice(&t.key_json(&row)).expect("json");
        assert_eq!(json, serde_json::json!({"k1": 7, "k2": "x\"y"}));
    }
}
