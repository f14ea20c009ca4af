//! Records -> row changes: a Debezium envelope (as `postgres-cdc` writes it) or a flat record,
//! its primary key from the record key or value, tombstones and `op: d` as deletes.

use sluice_connector_api::{Schema, SchemaRef, SinkRecord, Value};

use crate::config::{PrimaryKeyMode, SinkConfig};

/// One column's value, with its Connect schema when the record had one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    pub(crate) name: String,
    pub(crate) value: Value,
    pub(crate) schema: Option<SchemaRef>,
}

/// What one record does to its table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Insert, upsert or update `row` (which holds the key columns too).
    Write { key: Vec<Cell>, row: Vec<Cell> },
    /// Delete the row with this key.
    Delete { key: Vec<Cell> },
    /// An update that changed the primary key: delete the row of `old_key`, then write.
    Move {
        old_key: Vec<Cell>,
        key: Vec<Cell>,
        row: Vec<Cell>,
    },
    /// Empty the table (Debezium `op: t`).
    Truncate,
    /// Nothing to do (a tombstone or delete with deletes off, a Debezium message event).
    Skip,
}

/// Turns records into changes as the config says.
#[derive(Debug, Clone)]
pub(crate) struct Decoder {
    pk_mode: PrimaryKeyMode,
    pk_fields: Vec<String>,
    deletes: bool,
    tombstones: bool,
    truncates: bool,
    placeholder: String,
}

impl Decoder {
    pub(crate) fn new(config: &SinkConfig) -> Self {
        Self {
            pk_mode: config.primary_key_mode,
            pk_fields: config.primary_key_fields.clone(),
            deletes: config.delete_enabled,
            tombstones: config.delete_enabled && config.delete_on_tombstone,
            truncates: config.truncate_enabled,
            placeholder: config.toast_placeholder.clone(),
        }
    }

    /// The change a record makes; `Err` says why the record cannot become one.
    pub(crate) fn decode(&self, record: &SinkRecord) -> Result<Change, String> {
        let value_schema = record.value_schema.as_deref();
        if record.value.is_null() {
            if !self.tombstones {
                return Ok(Change::Skip);
            }
            return Ok(Change::Delete {
                key: self.record_key(record)?,
            });
        }
        if let Some(envelope) = Envelope::of(&record.value, value_schema) {
            return match envelope.op {
                "c" | "r" | "u" => {
                    let mut row =
                        fields(envelope.after, envelope.after_schema).ok_or_else(|| {
                            format!(
                                "Debezium `op: {}` event without an `after` struct",
                                envelope.op
                            )
                        })?;
                    // Unchanged TOAST values were not sent: the table keeps its own.
                    row.retain(|cell| !self.is_placeholder(&cell.value));
                    let change = self.write(record, row)?;
                    Ok(moved(change, envelope.before, envelope.before_schema))
                }
                "d" if self.deletes => Ok(Change::Delete {
                    key: self.record_key(record)?,
                }),
                "t" if self.truncates => Ok(Change::Truncate),
                "d" | "t" | "m" => Ok(Change::Skip),
                other => Err(format!(
                    "unknown Debezium op `{other}`; expected c, r, u, d, t or m"
                )),
            };
        }
        let row = fields(&record.value, value_schema).ok_or_else(|| {
            format!(
                "value is {}; expected a struct (or a map with string keys) or a Debezium envelope",
                describe(&record.value)
            )
        })?;
        self.write(record, row)
    }

    fn is_placeholder(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => *s == self.placeholder,
            Value::Bytes(b) => *b == self.placeholder.as_bytes(),
            Value::Array(items) => items.len() == 1 && self.is_placeholder(&items[0]),
            _ => false,
        }
    }

    fn write(&self, record: &SinkRecord, mut row: Vec<Cell>) -> Result<Change, String> {
        let key = match self.pk_mode {
            PrimaryKeyMode::None => Vec::new(),
            PrimaryKeyMode::RecordKey => self.record_key(record)?,
            PrimaryKeyMode::RecordValue => self
                .pk_fields
                .iter()
                .map(|name| {
                    row.iter()
                        .find(|c| &c.name == name)
                        .cloned()
                        .ok_or_else(|| format!("value has no field `{name}` (primary_key_fields)"))
                })
                .collect::<Result<_, _>>()?,
        };
        for cell in &key {
            if cell.value.is_null() {
                return Err(format!("key column `{}` is null", cell.name));
            }
            if !row.iter().any(|c| c.name == cell.name) {
                row.push(cell.clone());
            }
        }
        Ok(Change::Write { key, row })
    }

    /// The key columns of a record's key (`primary_key_mode: record_key`).
    fn record_key(&self, record: &SinkRecord) -> Result<Vec<Cell>, String> {
        if self.pk_mode != PrimaryKeyMode::RecordKey {
            return Err("a delete needs primary_key_mode record_key".to_owned());
        }
        let key = &record.key;
        if key.is_null() {
            return Err(
                "record has no key; primary_key_mode record_key finds rows by it".to_owned(),
            );
        }
        if let Some(cells) = fields(key, record.key_schema.as_deref()) {
            if self.pk_fields.is_empty() {
                if cells.is_empty() {
                    return Err("record key is an empty struct".to_owned());
                }
                return Ok(cells);
            }
            return self
                .pk_fields
                .iter()
                .map(|name| {
                    cells
                        .iter()
                        .find(|c| &c.name == name)
                        .cloned()
                        .ok_or_else(|| {
                            format!("record key has no field `{name}` (primary_key_fields)")
                        })
                })
                .collect();
        }
        match self.pk_fields.as_slice() {
            [name] => Ok(vec![Cell {
                name: name.clone(),
                value: key.clone(),
                schema: record.key_schema.clone(),
            }]),
            _ => Err(format!(
                "record key is {}; set primary_key_fields to the one column it fills",
                describe(key)
            )),
        }
    }
}

/// The parts of a Debezium change event that matter here.
struct Envelope<'a> {
    op: &'a str,
    before: &'a Value,
    before_schema: Option<&'a Schema>,
    after: &'a Value,
    after_schema: Option<&'a Schema>,
}

/// A write whose `before` image holds other key values than the write (an UPDATE of the
/// primary key) becomes a move, so the row under the old key goes.
fn moved(change: Change, before: &Value, before_schema: Option<&Schema>) -> Change {
    let Change::Write { key, row } = change else {
        return change;
    };
    let old: Option<Vec<Cell>> = fields(before, before_schema).and_then(|cells| {
        key.iter()
            .map(|k| cells.iter().find(|c| c.name == k.name).cloned())
            .collect()
    });
    match old {
        Some(old_key)
            if !key.is_empty() && old_key.iter().zip(&key).any(|(o, k)| o.value != k.value) =>
        {
            Change::Move { old_key, key, row }
        }
        _ => Change::Write { key, row },
    }
}

impl<'a> Envelope<'a> {
    /// A struct (or schemaless map) with a string `op` and an `after` field.
    fn of(value: &'a Value, schema: Option<&'a Schema>) -> Option<Self> {
        static NULL: Value = Value::Null;
        match value {
            Value::Struct(s) => {
                let op = s.get("op")?.as_str()?;
                let after = s.get("after")?;
                let field = |name| schema.and_then(|s| s.field(name)).map(|f| &*f.schema);
                Some(Self {
                    op,
                    before: s.get("before").unwrap_or(&NULL),
                    before_schema: field("before"),
                    after,
                    after_schema: field("after"),
                })
            }
            Value::Map(entries) => {
                let get = |name: &str| {
                    entries
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(name))
                        .map(|(_, v)| v)
                };
                let op = get("op")?.as_str()?;
                let after = get("after").unwrap_or(&NULL);
                Some(Self {
                    op,
                    before: get("before")?,
                    before_schema: None,
                    after,
                    after_schema: None,
                })
            }
            _ => None,
        }
    }
}

/// The fields of a struct, or of a map with string keys, as cells.
fn fields(value: &Value, schema: Option<&Schema>) -> Option<Vec<Cell>> {
    match value {
        Value::Struct(s) => Some(
            s.iter()
                .map(|(name, value)| Cell {
                    name: name.to_owned(),
                    value: value.clone(),
                    schema: schema.and_then(|s| s.field(name)).map(|f| f.schema.clone()),
                })
                .collect(),
        ),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                Some(Cell {
                    name: k.as_str()?.to_owned(),
                    value: v.clone(),
                    schema: None,
                })
            })
            .collect(),
        _ => None,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        other => format!("of type {}", other.type_name()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::{ConfigSpec, Struct};

    fn decoder(extra: serde_json::Value) -> Decoder {
        let mut input = serde_json::json!({"topics": ["t"], "url": "postgres://h/db"});
        input
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let spec: ConfigSpec = crate::config::sink_spec();
        let config: SinkConfig = spec
            .validate(input.as_object().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        Decoder::new(&config)
    }

    fn record(key: Value, value: Value) -> SinkRecord {
        SinkRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            key_schema: None,
            key,
            value_schema: None,
            value,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    fn cell(name: &str, value: impl Into<Value>) -> Cell {
        Cell {
            name: name.into(),
            value: value.into(),
            schema: None,
        }
    }

    #[test]
    fn envelopes_write_after_and_delete_by_key() {
        let d = decoder(serde_json::json!({}));
        let key = Value::Struct(Struct::new().with("id", 1i32));
        let row = Value::Struct(Struct::new().with("id", 1i32).with("name", "a"));
        let create = Value::Struct(
            Struct::new()
                .with("before", Value::Null)
                .with("after", row)
                .with("op", "c"),
        );
        assert_eq!(
            d.decode(&record(key.clone(), create)),
            Ok(Change::Write {
                key: vec![cell("id", 1i32)],
                row: vec![cell("id", 1i32), cell("name", "a")]
            })
        );
        let delete = Value::Struct(
            Struct::new()
                .with("before", Value::Struct(Struct::new().with("id", 1i32)))
                .with("after", Value::Null)
                .with("op", "d"),
        );
        assert_eq!(
            d.decode(&record(key.clone(), delete)),
            Ok(Change::Delete {
                key: vec![cell("id", 1i32)]
            })
        );
        assert_eq!(
            d.decode(&record(key, Value::Null)),
            Ok(Change::Delete {
                key: vec![cell("id", 1i32)]
            })
        );
    }

    #[test]
    fn flat_records_take_a_primitive_key_as_the_named_column() {
        let d = decoder(serde_json::json!({"primary_key_fields": ["code"]}));
        let value = Value::Map(vec![(Value::from("qty"), Value::Int64(3))]);
        assert_eq!(
            d.decode(&record(Value::from("x1"), value)),
            Ok(Change::Write {
                key: vec![cell("code", "x1")],
                row: vec![cell("qty", 3i64), cell("code", "x1")]
            })
        );
        let d = decoder(serde_json::json!({}));
        let err = d
            .decode(&record(Value::from("x1"), Value::Map(vec![])))
            .unwrap_err();
        assert!(err.contains("set primary_key_fields"), "{err}");
        let err = d
            .decode(&record(Value::Null, Value::from("text")))
            .unwrap_err();
        assert!(err.contains("value is of type string"), "{err}");
    }

    #[test]
    fn an_update_of_the_key_moves_the_row() {
        let d = decoder(serde_json::json!({}));
        let update = Value::Struct(
            Struct::new()
                .with("before", Value::Struct(Struct::new().with("id", 1i32)))
                .with("after", Value::Struct(Struct::new().with("id", 2i32)))
                .with("op", "u"),
        );
        let key = Value::Struct(Struct::new().with("id", 2i32));
        assert_eq!(
            d.decode(&record(key, update)),
            Ok(Change::Move {
                old_key: vec![cell("id", 1i32)],
                key: vec![cell("id", 2i32)],
                row: vec![cell("id", 2i32)]
            })
        );
    }

    #[test]
    fn tombstones_and_deletes_follow_the_config() {
        let d = decoder(serde_json::json!({"delete_on_tombstone": false}));
        let key = Value::Struct(Struct::new().with("id", 1i32));
        assert_eq!(d.decode(&record(key, Value::Null)), Ok(Change::Skip));
        let d = decoder(serde_json::json!({"delete_enabled": false}));
        let delete = Value::Struct(
            Struct::new()
                .with("before", Value::Null)
                .with("after", Value::Null)
                .with("op", "d"),
        );
        assert_eq!(d.decode(&record(Value::Null, delete)), Ok(Change::Skip));
    }
}
