//! Debezium's ExtractNewRecordState: unwraps a change event envelope (`before`, `after`,
//! `source`, `op`, `ts_ms`) to the row state after the change.
//!
//! - creates, reads (snapshots) and updates become the `after` struct with its schema;
//! - deletes follow `delete.handling.mode`: `drop` (default) drops them, `none` keeps them with a
//!   null value, `rewrite` emits the `before` state with `__deleted: "true"` (and every other
//!   record gets `__deleted: "false"`); Debezium 2.5's `delete.tombstone.handling.mode`
//!   (`drop`, `tombstone`, `rewrite`, `rewrite-with-tombstone`) is accepted instead;
//! - tombstones are dropped unless `drop.tombstones` is false;
//! - `add.fields` / `add.headers` copy envelope fields (`op`, `ts_ms`) or source fields (`table`,
//!   `lsn`, `source.ts_ms`) into the row (`__op`, `__table`, `__source_ts_ms`) or headers;
//! - truncate events (`op: t`) are dropped; records that are not envelopes pass unchanged.
//!
//! Debezium passes schemaless records through; Sluice also unwraps schemaless envelopes (maps
//! with `op` and `after`), as the JSON converter reads them with schemas off.

use std::sync::Arc;

use sluice_connector_api::{Header, Schema, SchemaRef, SchemaType, Struct, Value};

use super::cache::SchemaCache;
use super::headers::header_bytes;
use super::part::{Side, map_get, map_put, optional, struct_get, struct_like};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "ExtractNewRecordState";
const DELETED: &str = "deleted";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletes {
    Drop,
    /// Kept with a null value.
    Null,
    Rewrite,
}

/// A field to copy: from the envelope (`op`, `ts_ms`) or a struct in it (`source`).
#[derive(Debug, Clone)]
struct Added {
    /// `None`: the envelope itself.
    within: Option<String>,
    field: String,
    /// The name in the row or header, prefix included.
    output: String,
}

impl Added {
    fn parse(text: &str, prefix: &str) -> Self {
        match text.split_once('.') {
            Some((within, field)) => Self {
                within: Some(within.to_owned()),
                field: field.to_owned(),
                output: format!("{prefix}{within}_{field}"),
            },
            None => {
                let envelope = ["op", "ts_ms", "ts_us", "ts_ns"].contains(&text);
                Self {
                    within: (!envelope).then(|| "source".to_owned()),
                    field: text.to_owned(),
                    output: format!("{prefix}{text}"),
                }
            }
        }
    }
}

struct ExtractNewRecordState {
    deletes: Deletes,
    drop_tombstones: bool,
    add_fields: Vec<Added>,
    add_headers: Vec<Added>,
    deleted_field: String,
    schemas: SchemaCache,
    delete_schemas: SchemaCache,
}

/// An envelope, schema or schemaless, read by field name.
enum Envelope {
    Struct(Struct),
    Map(Vec<(Value, Value)>),
}

impl Envelope {
    fn get(&self, name: &str) -> &Value {
        match self {
            Self::Struct(s) => struct_get(s, name),
            Self::Map(m) => map_get(m, name).unwrap_or(&Value::Null),
        }
    }

    fn lookup(&self, added: &Added) -> Value {
        let Some(within) = &added.within else {
            return self.get(&added.field).clone();
        };
        match self.get(within) {
            Value::Struct(s) => struct_get(s, &added.field).clone(),
            Value::Map(m) => map_get(m, &added.field).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }
}

fn field_schema<'a>(schema: &'a Schema, name: &str) -> Option<&'a SchemaRef> {
    schema.field(name).map(|f| &f.schema)
}

fn is_envelope_schema(schema: &Schema) -> bool {
    schema.kind == SchemaType::Struct
        && schema.field("op").is_some()
        && field_schema(schema, "after").is_some_and(|s| s.kind == SchemaType::Struct)
}

impl ExtractNewRecordState {
    /// The row schema: `row` plus the added fields and (rewrite) `__deleted`.
    fn row_schema(&self, envelope: &Schema, row: &Schema) -> Result<Schema, TransformError> {
        let mut fields: Vec<(String, SchemaRef)> = row
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.schema.clone()))
            .collect();
        for added in &self.add_fields {
            let source = match &added.within {
                None => field_schema(envelope, &added.field),
                Some(within) => {
                    field_schema(envelope, within).and_then(|s| field_schema(s, &added.field))
                }
            };
            let Some(source) = source else {
                return Err(TransformError::record(
                    NAME,
                    format!(
                        "add.fields names `{}`, which the envelope schema does not have",
                        added
                            .within
                            .as_ref()
                            .map_or(added.field.clone(), |w| format!("{w}.{}", added.field))
                    ),
                ));
            };
            fields.push((added.output.clone(), optional(source)));
        }
        if self.deletes == Deletes::Rewrite {
            fields.push((
                self.deleted_field.clone(),
                Arc::new(Schema::string().optional()),
            ));
        }
        Ok(struct_like(row, fields))
    }

    fn row_fields(&self, envelope: &Envelope, deleted: bool) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = self
            .add_fields
            .iter()
            .map(|a| (a.output.clone(), envelope.lookup(a)))
            .collect();
        if self.deletes == Deletes::Rewrite {
            out.push((
                self.deleted_field.clone(),
                Value::from(if deleted { "true" } else { "false" }),
            ));
        }
        out
    }
}

impl Transform for ExtractNewRecordState {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        if record.value.is_null() {
            return Ok((!self.drop_tombstones).then_some(record));
        }
        let is_envelope = match (&record.value_schema, &record.value) {
            (Some(schema), Value::Struct(_)) => is_envelope_schema(schema),
            (None, Value::Map(m)) => map_get(m, "op").is_some() && map_get(m, "after").is_some(),
            _ => false,
        };
        if !is_envelope {
            return Ok(Some(record));
        }
        let schema = record.value_schema.take();
        let envelope = match std::mem::replace(&mut record.value, Value::Null) {
            Value::Struct(s) => Envelope::Struct(s),
            Value::Map(m) => Envelope::Map(m),
            _ => unreachable!("checked above"),
        };
        let op = envelope.get("op").as_str().unwrap_or_default().to_owned();
        let deleted = op == "d";
        if op == "t" || (deleted && self.deletes == Deletes::Drop) {
            return Ok(None);
        }
        for added in &self.add_headers {
            record.headers.push(Header {
                key: added.output.clone(),
                value: header_bytes(&envelope.lookup(added)),
            });
        }
        let state = if deleted && self.deletes == Deletes::Rewrite {
            "before"
        } else {
            "after"
        };
        let row = envelope.get(state).clone();
        match schema {
            Some(schema) => {
                let cache = if state == "before" {
                    &self.delete_schemas
                } else {
                    &self.schemas
                };
                let row_schema = cache.get_or_try(&schema, |s| {
                    let row = field_schema(s, state).ok_or_else(|| {
                        TransformError::record(
                            NAME,
                            format!("the envelope schema has no `{state}` field"),
                        )
                    })?;
                    self.row_schema(s, row)
                })?;
                record.value = match row {
                    Value::Struct(mut data) => {
                        for (name, v) in self.row_fields(&envelope, deleted) {
                            data.push(name, v);
                        }
                        Value::Struct(data)
                    }
                    _ => Value::Null,
                };
                record.value_schema = Some(row_schema);
            }
            None => {
                record.value = match row {
                    Value::Map(mut entries) => {
                        for (name, v) in self.row_fields(&envelope, deleted) {
                            map_put(&mut entries, &name, v);
                        }
                        Value::Map(entries)
                    }
                    other => other,
                };
            }
        }
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, _: Side) -> Option<Box<dyn Transform>> {
    let legacy = p.one_of(
        "delete.handling.mode",
        &["drop", "none", "rewrite"],
        Some("drop"),
    );
    let given_legacy =
        p.string("delete.handling.mode").is_some() || p.string("drop.tombstones").is_some();
    let drop_tombstones = p.bool_or("drop.tombstones", true);
    let modern = p.string("delete.tombstone.handling.mode").map(|_| {
        p.one_of(
            "delete.tombstone.handling.mode",
            &["drop", "tombstone", "rewrite", "rewrite-with-tombstone"],
            None,
        )
    });
    let fields_prefix = p.string_or("add.fields.prefix", "__");
    let headers_prefix = p.string_or("add.headers.prefix", "__");
    let add_fields = p.list("add.fields").unwrap_or_default();
    let add_headers = p.list("add.headers").unwrap_or_default();
    let (deletes, drop_tombstones) = match modern {
        Some(mode) => {
            if given_legacy {
                p.error(
                    "delete.tombstone.handling.mode",
                    "set either delete.tombstone.handling.mode or delete.handling.mode/drop.tombstones, not both",
                );
            }
            match mode?.as_str() {
                "drop" => (Deletes::Drop, true),
                "tombstone" => (Deletes::Null, false),
                "rewrite" => (Deletes::Rewrite, true),
                _ => (Deletes::Rewrite, false),
            }
        }
        None => (
            match legacy?.as_str() {
                "none" => Deletes::Null,
                "rewrite" => Deletes::Rewrite,
                _ => Deletes::Drop,
            },
            drop_tombstones,
        ),
    };
    Some(Box::new(ExtractNewRecordState {
        deletes,
        drop_tombstones,
        add_fields: add_fields
            .iter()
            .map(|f| Added::parse(f, &fields_prefix))
            .collect(),
        add_headers: add_headers
            .iter()
            .map(|f| Added::parse(f, &headers_prefix))
            .collect(),
        deleted_field: format!("{fields_prefix}{DELETED}"),
        schemas: SchemaCache::default(),
        delete_schemas: SchemaCache::default(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Header, Schema, Struct, Value};

    use super::super::testing::{apply, chain, config_errors, map, record};

    fn row_schema() -> Schema {
        Schema::struct_builder()
            .name("db.public.orders.Value")
            .field("id", Schema::int32())
            .field("qty", Schema::int32().optional())
            .optional()
            .build()
    }

    fn envelope_schema() -> Arc<Schema> {
        let row = Arc::new(row_schema());
        Arc::new(
            Schema::struct_builder()
                .name("db.public.orders.Envelope")
                .field_ref("before", row.clone())
                .field_ref("after", row)
                .field(
                    "source",
                    Schema::struct_builder()
                        .field("table", Schema::string())
                        .field("lsn", Schema::int64().optional())
                        .build(),
                )
                .field("op", Schema::string())
                .field("ts_ms", Schema::int64().optional())
                .build(),
        )
    }

    fn envelope(op: &str, before: Option<i32>, after: Option<i32>) -> Value {
        let row = |id: Option<i32>| {
            id.map_or(Value::Null, |id| {
                Value::Struct(Struct::new().with("id", id).with("qty", 5i32))
            })
        };
        Value::Struct(
            Struct::new()
                .with("before", row(before))
                .with("after", row(after))
                .with(
                    "source",
                    Struct::new().with("table", "orders").with("lsn", 99i64),
                )
                .with("op", op)
                .with("ts_ms", 1000i64),
        )
    }

    #[test]
    fn unwraps_creates_and_updates_to_the_after_state() {
        let chain = chain(json!({"type": "io.debezium.transforms.ExtractNewRecordState"}));
        for op in ["c", "r", "u"] {
            let out = apply(
                &chain,
                record(Some(envelope_schema()), envelope(op, Some(1), Some(2))),
            );
            assert_eq!(
                out.value,
                Value::Struct(Struct::new().with("id", 2i32).with("qty", 5i32))
            );
            assert_eq!(*out.value_schema.unwrap(), row_schema());
        }
        // Deletes and tombstones are dropped by default.
        assert!(
            chain
                .apply(record(
                    Some(envelope_schema()),
                    envelope("d", Some(1), None)
                ))
                .unwrap()
                .is_none()
        );
        assert!(chain.apply(record(None, Value::Null)).unwrap().is_none());
        // Not an envelope: unchanged.
        let plain = record(Some(Arc::new(Schema::string())), Value::from("x"));
        assert_eq!(apply(&chain, plain.clone()), plain);
    }

    #[test]
    fn rewrite_marks_deletes_and_adds_fields_and_headers() {
        let chain = chain(json!({
            "type": "ExtractNewRecordState", "delete.handling.mode": "rewrite", "drop.tombstones": "false",
            "add.fields": "op,table,source.lsn", "add.headers": "op",
        }));
        let out = apply(
            &chain,
            record(Some(envelope_schema()), envelope("d", Some(1), None)),
        );
        assert_eq!(
            out.value,
            Value::Struct(
                Struct::new()
                    .with("id", 1i32)
                    .with("qty", 5i32)
                    .with("__op", "d")
                    .with("__table", "orders")
                    .with("__source_lsn", 99i64)
                    .with("__deleted", "true")
            )
        );
        assert_eq!(out.headers, vec![Header::new("__op", "d")]);
        let s = out.value_schema.unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["id", "qty", "__op", "__table", "__source_lsn", "__deleted"]
        );
        assert_eq!(
            *s.field("__table").unwrap().schema,
            Schema::string().optional()
        );
        assert!(s.validate_value(&out.value).is_ok());
        let out = apply(
            &chain,
            record(Some(envelope_schema()), envelope("u", Some(1), Some(1))),
        );
        assert_eq!(
            out.value.as_struct().unwrap().get("__deleted"),
            Some(&Value::from("false"))
        );
        // Tombstones are kept when drop.tombstones is false.
        let tombstone = record(None, Value::Null).with_key(None, Value::from("k"));
        assert_eq!(apply(&chain, tombstone.clone()), tombstone);
    }

    #[test]
    fn schemaless_envelopes_unwrap_too() {
        let chain = chain(
            json!({"type": "ExtractNewRecordState", "delete.handling.mode": "none", "add.fields": "ts_ms"}),
        );
        let env = map(&[
            ("before", Value::Null),
            ("after", map(&[("id", Value::from(3i64))])),
            ("source", map(&[("table", Value::from("orders"))])),
            ("op", Value::from("c")),
            ("ts_ms", Value::from(7i64)),
        ]);
        let out = apply(&chain, record(None, env));
        assert_eq!(
            out.value,
            map(&[("id", Value::from(3i64)), ("__ts_ms", Value::from(7i64))])
        );
        let deleted = map(&[
            ("before", map(&[("id", Value::from(3i64))])),
            ("after", Value::Null),
            ("op", Value::from("d")),
        ]);
        let out = apply(&chain, record(None, deleted));
        assert_eq!(out.value, Value::Null);
    }

    #[test]
    fn modern_mode_and_config_errors() {
        let chain = chain(
            json!({"type": "ExtractNewRecordState", "delete.tombstone.handling.mode": "tombstone"}),
        );
        let out = apply(
            &chain,
            record(Some(envelope_schema()), envelope("d", Some(1), None)),
        );
        assert_eq!(out.value, Value::Null);
        let tombstone = record(None, Value::Null);
        assert_eq!(apply(&chain, tombstone.clone()), tombstone);
        let errors =
            config_errors(json!({"type": "ExtractNewRecordState", "delete.handling.mode": "keep"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.delete.handling.mode: expected one of drop, none, rewrite, got `keep`"
        );
        let errors = config_errors(
            json!({"type": "ExtractNewRecordState", "drop.tombstones": "false", "delete.tombstone.handling.mode": "drop"}),
        );
        assert_eq!(
            errors[0].field,
            "transforms.t.delete.tombstone.handling.mode"
        );
    }
}
