//! InsertField: adds the record's topic, partition, offset, timestamp and/or a static string to
//! a struct (with schema) or a map (schemaless). A field name ending in `!` is required in the
//! new schema, `?` (or nothing) optional. Tombstones (null) pass through unchanged.

use std::sync::Arc;

use sluice_connector_api::{Schema, SchemaRef, Value};

use super::cache::SchemaCache;
use super::part::{Side, map_put, require_map, require_struct, struct_like};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "InsertField";

#[derive(Debug, Clone)]
struct InsertSpec {
    name: String,
    optional: bool,
}

impl InsertSpec {
    fn parse(text: &str) -> Self {
        if let Some(name) = text.strip_suffix('!') {
            Self {
                name: name.to_owned(),
                optional: false,
            }
        } else {
            Self {
                name: text.strip_suffix('?').unwrap_or(text).to_owned(),
                optional: true,
            }
        }
    }
}

struct InsertField {
    side: Side,
    topic: Option<InsertSpec>,
    partition: Option<InsertSpec>,
    offset: Option<InsertSpec>,
    timestamp: Option<InsertSpec>,
    static_field: Option<InsertSpec>,
    static_value: String,
    schemas: SchemaCache,
}

impl InsertField {
    /// The fields to insert, in Kafka Connect's order, with their schemas and values.
    fn additions(
        &self,
        record: &TransformRecord,
    ) -> Result<Vec<(&InsertSpec, Schema, Value)>, TransformError> {
        let mut out = Vec::new();
        if let Some(spec) = &self.topic {
            out.push((spec, Schema::string(), Value::from(record.topic.clone())));
        }
        if let Some(spec) = &self.partition {
            out.push((spec, Schema::int32(), Value::from(record.partition)));
        }
        if let Some(spec) = &self.offset {
            let Some(offset) = record.kafka_offset else {
                return Err(TransformError::record(
                    NAME,
                    "offset.field needs a consumed record's Kafka offset; source records have none",
                ));
            };
            out.push((spec, Schema::int64(), Value::Int64(offset)));
        }
        if let Some(spec) = &self.timestamp {
            out.push((
                spec,
                Schema::timestamp(),
                record.timestamp.map_or(Value::Null, Value::Timestamp),
            ));
        }
        if let Some(spec) = &self.static_field {
            out.push((
                spec,
                Schema::string(),
                Value::from(self.static_value.clone()),
            ));
        }
        for (spec, _, value) in &out {
            if !spec.optional && value.is_null() {
                return Err(TransformError::record(
                    NAME,
                    format!(
                        "field `{}` is required (`!`) but the record has no value for it",
                        spec.name
                    ),
                ));
            }
        }
        Ok(out)
    }
}

impl Transform for InsertField {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        if self.side.value(&record).is_null() {
            return Ok(Some(record));
        }
        let additions = self.additions(&record)?;
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match schema {
            Some(schema) => {
                let mut data = require_struct(NAME, self.side, &schema, value)?;
                let out_schema = self.schemas.get_or_try(&schema, |s| {
                    let mut fields: Vec<(String, SchemaRef)> = s
                        .fields
                        .iter()
                        .map(|f| (f.name.clone(), f.schema.clone()))
                        .collect();
                    for (spec, field_schema, _) in &additions {
                        if s.field(&spec.name).is_some() {
                            return Err(TransformError::record(
                                NAME,
                                format!(
                                    "the {} schema already has a field `{}`",
                                    self.side.name(),
                                    spec.name
                                ),
                            ));
                        }
                        let field_schema = if spec.optional {
                            field_schema.clone().optional()
                        } else {
                            field_schema.clone()
                        };
                        fields.push((spec.name.clone(), Arc::new(field_schema)));
                    }
                    Ok(struct_like(s, fields))
                })?;
                for (spec, _, v) in additions {
                    data.put(spec.name.clone(), v);
                }
                (Some(out_schema), Value::Struct(data))
            }
            None => {
                let mut entries = require_map(NAME, self.side, value)?;
                for (spec, _, v) in additions {
                    map_put(&mut entries, &spec.name, v);
                }
                (None, Value::Map(entries))
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let field = |name: &str| {
        p.string(name)
            .filter(|s| !s.is_empty())
            .map(|s| InsertSpec::parse(&s))
    };
    let topic = field("topic.field");
    let partition = field("partition.field");
    let offset = field("offset.field");
    let timestamp = field("timestamp.field");
    let static_field = field("static.field");
    let static_value = p.string("static.value");
    if static_field.is_some() && static_value.is_none() {
        p.error(
            "static.value",
            "missing required field (static.field is set)",
        );
    }
    if static_field.is_none() && static_value.is_some() {
        p.error(
            "static.field",
            "missing required field (static.value is set)",
        );
    }
    if [&topic, &partition, &offset, &timestamp, &static_field]
        .iter()
        .all(|f| f.is_none())
        && static_value.is_none()
    {
        p.error(
            "static.field",
            "nothing to insert: set topic.field, partition.field, offset.field, timestamp.field \
             or static.field",
        );
    }
    Some(Box::new(InsertField {
        side,
        topic,
        partition,
        offset,
        timestamp,
        static_value: if static_field.is_some() {
            static_value?
        } else {
            String::new()
        },
        static_field,
        schemas: SchemaCache::default(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};

    fn schema() -> Arc<Schema> {
        Arc::new(
            Schema::struct_builder()
                .name("shop.Order")
                .version(2)
                .field("id", Schema::int64())
                .build(),
        )
    }

    #[test]
    fn inserts_into_a_struct_and_its_schema() {
        let chain = chain(json!({
            "type": "org.apache.kafka.connect.transforms.InsertField$Value",
            "topic.field": "t!", "partition.field": "p", "timestamp.field": "ts?",
            "static.field": "origin", "static.value": "sluice",
        }));
        let mut r = record(
            Some(schema()),
            Value::Struct(Struct::new().with("id", 1i64)),
        );
        r.partition = Some(3);
        r.timestamp = Some(42);
        let out = apply(&chain, r);
        assert_eq!(
            out.value,
            Value::Struct(
                Struct::new()
                    .with("id", 1i64)
                    .with("t", "orders")
                    .with("p", 3i32)
                    .with("ts", Value::Timestamp(42))
                    .with("origin", "sluice")
            )
        );
        let s = out.value_schema.unwrap();
        assert_eq!(s.name.as_deref(), Some("shop.Order"));
        assert_eq!(s.version, Some(2));
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "t", "p", "ts", "origin"]);
        assert_eq!(*s.field("t").unwrap().schema, Schema::string());
        assert_eq!(*s.field("p").unwrap().schema, Schema::int32().optional());
        assert_eq!(
            *s.field("ts").unwrap().schema,
            Schema::timestamp().optional()
        );
        assert!(s.validate_value(&out.value).is_ok());
    }

    #[test]
    fn inserts_into_a_schemaless_key_and_passes_tombstones() {
        let chain = chain(
            json!({"type": "InsertField$Key", "offset.field": "off", "topic.field": "topic"}),
        );
        let mut r =
            record(None, Value::from(1i32)).with_key(None, map(&[("id", Value::from(1i32))]));
        r.kafka_offset = Some(17);
        let out = apply(&chain, r.clone());
        assert_eq!(
            out.key,
            map(&[
                ("id", Value::from(1i32)),
                ("topic", Value::from("orders")),
                ("off", Value::Int64(17))
            ])
        );
        assert_eq!(out.key_schema, None);
        r.kafka_offset = None;
        assert_eq!(
            apply_err(&chain, r),
            "InsertField: offset.field needs a consumed record's Kafka offset; source records have none"
        );
        let tombstone = record(None, Value::from(1i32)).with_key(None, Value::Null);
        assert_eq!(apply(&chain, tombstone.clone()), tombstone);
        let mut not_a_map = record(None, Value::Null).with_key(None, Value::from("k"));
        not_a_map.kafka_offset = Some(1);
        assert_eq!(
            apply_err(&chain, not_a_map),
            "InsertField: the schemaless key is a string; expected a map"
        );
    }

    #[test]
    fn required_field_without_a_value_fails() {
        let chain = chain(json!({"type": "InsertField$Value", "timestamp.field": "ts!"}));
        let r = record(
            Some(schema()),
            Value::Struct(Struct::new().with("id", 1i64)),
        );
        assert_eq!(
            apply_err(&chain, r),
            "InsertField: field `ts` is required (`!`) but the record has no value for it"
        );
    }

    #[test]
    fn config_mistakes_are_named() {
        let errors = config_errors(json!({"type": "InsertField$Value", "static.field": "origin"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.static.value: missing required field (static.field is set)"
        );
        let errors = config_errors(json!({"type": "InsertField$Value", "statik.field": "x"}));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["transforms.t.static.field", "transforms.t.statik.field"]
        );
        assert!(
            errors[1]
                .message
                .starts_with("unknown property; expected one of: "),
            "{}",
            errors[1].message
        );
        let errors = config_errors(json!({"type": "InsertField", "topic.field": "t"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.type: `InsertField` works on the key or the value: write InsertField$Key or InsertField$Value"
        );
    }
}
