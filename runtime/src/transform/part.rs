//! The key or value part of a record, and the shapes transforms require of it: a `Struct` with a
//! struct schema, or (schemaless) a map with string keys, as Kafka Connect's `Requirements`.

use std::sync::Arc;

use sluice_connector_api::{Field, Schema, SchemaRef, SchemaType, Struct, Value};

use super::{TransformError, TransformRecord};

/// Which part of a record a `$Key` or `$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Key,
    Value,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Value => "value",
        }
    }

    pub(crate) fn value(self, record: &TransformRecord) -> &Value {
        match self {
            Self::Key => &record.key,
            Self::Value => &record.value,
        }
    }

    /// Takes the schema and value out, leaving `Null`.
    pub(crate) fn take(self, record: &mut TransformRecord) -> (Option<SchemaRef>, Value) {
        match self {
            Self::Key => (
                record.key_schema.take(),
                std::mem::replace(&mut record.key, Value::Null),
            ),
            Self::Value => (
                record.value_schema.take(),
                std::mem::replace(&mut record.value, Value::Null),
            ),
        }
    }

    pub(crate) fn set(self, record: &mut TransformRecord, schema: Option<SchemaRef>, value: Value) {
        match self {
            Self::Key => {
                record.key_schema = schema;
                record.key = value;
            }
            Self::Value => {
                record.value_schema = schema;
                record.value = value;
            }
        }
    }
}

/// The error for a part of the wrong shape.
pub(crate) fn wrong_type(
    transform: &'static str,
    what: impl Into<String>,
    found: &Value,
    expected: &str,
) -> TransformError {
    TransformError::WrongType {
        transform,
        what: what.into(),
        found: article(found.type_name()),
        expected: expected.to_owned(),
    }
}

/// "a struct", "an int32".
pub(crate) fn article(name: &str) -> String {
    let vowel = name
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    if name == "null" {
        "null".to_owned()
    } else if vowel {
        format!("an {name}")
    } else {
        format!("a {name}")
    }
}

/// The entries of a schemaless map part.
pub(crate) fn require_map(
    transform: &'static str,
    side: Side,
    value: Value,
) -> Result<Vec<(Value, Value)>, TransformError> {
    match value {
        Value::Map(entries) => Ok(entries),
        other => Err(wrong_type(
            transform,
            format!("the schemaless {}", side.name()),
            &other,
            "a map",
        )),
    }
}

/// The struct of a part with a schema, which must be a struct schema.
pub(crate) fn require_struct(
    transform: &'static str,
    side: Side,
    schema: &Schema,
    value: Value,
) -> Result<Struct, TransformError> {
    require_struct_schema(transform, side, schema)?;
    match value {
        Value::Struct(s) => Ok(s),
        other => Err(wrong_type(
            transform,
            format!("the {}", side.name()),
            &other,
            "a struct",
        )),
    }
}

pub(crate) fn require_struct_schema(
    transform: &'static str,
    side: Side,
    schema: &Schema,
) -> Result<(), TransformError> {
    if schema.kind == SchemaType::Struct {
        Ok(())
    } else {
        Err(TransformError::WrongType {
            transform,
            what: format!("the {} schema", side.name()),
            found: article(&schema.describe()),
            expected: "a struct schema".to_owned(),
        })
    }
}

/// The value under a string key of a schemaless map.
pub(crate) fn map_get<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Sets a string key of a schemaless map, replacing an existing entry in place.
pub(crate) fn map_put(entries: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some(slot) => slot.1 = value,
        None => entries.push((Value::String(key.to_owned()), value)),
    }
}

/// A struct schema with `like`'s name, version, doc, parameters and optionality and these fields,
/// as Kafka Connect's `SchemaUtil.copySchemaBasics` does.
pub(crate) fn struct_like(like: &Schema, fields: Vec<(String, SchemaRef)>) -> Schema {
    let mut schema = Schema::of(SchemaType::Struct);
    schema.name = like.name.clone();
    schema.version = like.version;
    schema.doc = like.doc.clone();
    schema.parameters = like.parameters.clone();
    schema.optional = like.optional;
    schema.fields = fields
        .into_iter()
        .enumerate()
        .map(|(index, (name, schema))| Field {
            name,
            index,
            schema,
        })
        .collect();
    schema
}

/// The field's value in a struct, `Null` when absent.
pub(crate) fn struct_get<'a>(value: &'a Struct, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

/// A copy of `schema` marked optional (the same `Arc` when it already is).
pub(crate) fn optional(schema: &SchemaRef) -> SchemaRef {
    if schema.optional {
        schema.clone()
    } else {
        Arc::new(Schema {
            optional: true,
            ..(**schema).clone()
        })
    }
}
