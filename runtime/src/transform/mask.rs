//! MaskField: replaces fields with their type's empty value (0, false, "", empty bytes, epoch,
//! empty array or map) or with `replacement` for numbers and strings. The schema is unchanged.
//! Tombstones pass through; a schemaless map without the field is left as it is.

use sluice_connector_api::{Decimal, Struct, Value};

use super::part::{Side, map_get, map_put, require_map, require_struct, wrong_type};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "MaskField";

struct MaskField {
    side: Side,
    fields: Vec<String>,
    replacement: Option<String>,
}

impl MaskField {
    fn masked(&self, field: &str, value: &Value) -> Result<Value, TransformError> {
        let what = || format!("field `{field}`");
        let Some(text) = &self.replacement else {
            return Ok(match value {
                Value::Null => Value::Null,
                Value::Boolean(_) => Value::Boolean(false),
                Value::Int8(_) => Value::Int8(0),
                Value::Int16(_) => Value::Int16(0),
                Value::Int32(_) => Value::Int32(0),
                Value::Int64(_) => Value::Int64(0),
                Value::Float32(_) => Value::Float32(0.0),
                Value::Float64(_) => Value::Float64(0.0),
                Value::String(_) => Value::String(String::new()),
                Value::Bytes(_) => Value::Bytes(Vec::new()),
                Value::Array(_) => Value::Array(Vec::new()),
                Value::Map(_) => Value::Map(Vec::new()),
                Value::Decimal(d) => Value::Decimal(Decimal {
                    unscaled: Default::default(),
                    scale: d.scale,
                }),
                Value::Date(_) => Value::Date(0),
                Value::Time(_) => Value::Time(0),
                Value::Timestamp(_) => Value::Timestamp(0),
                Value::Struct(_) => {
                    return Err(wrong_type(NAME, what(), value, "a primitive, array or map"));
                }
            });
        };
        let parse_error = |target: &str| TransformError::Convert {
            transform: NAME,
            what: "replacement for".to_owned() + &format!(" {}", what()),
            value: text.clone(),
            target: target.to_owned(),
            reason: "not a number of that type".to_owned(),
        };
        let t = text.trim();
        Ok(match value {
            Value::Null => Value::Null,
            Value::String(_) => Value::String(text.clone()),
            Value::Int8(_) => Value::Int8(t.parse().map_err(|_| parse_error("int8"))?),
            Value::Int16(_) => Value::Int16(t.parse().map_err(|_| parse_error("int16"))?),
            Value::Int32(_) => Value::Int32(t.parse().map_err(|_| parse_error("int32"))?),
            Value::Int64(_) => Value::Int64(t.parse().map_err(|_| parse_error("int64"))?),
            Value::Float32(_) => Value::Float32(t.parse().map_err(|_| parse_error("float"))?),
            Value::Float64(_) => Value::Float64(t.parse().map_err(|_| parse_error("double"))?),
            Value::Decimal(_) => {
                Value::Decimal(Decimal::parse(t).ok_or_else(|| parse_error("Decimal"))?)
            }
            other => {
                return Err(wrong_type(
                    NAME,
                    what(),
                    other,
                    "a number or a string to mask with a replacement",
                ));
            }
        })
    }
}

impl Transform for MaskField {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        if self.side.value(&record).is_null() {
            return Ok(Some(record));
        }
        let (schema, value) = self.side.take(&mut record);
        let value = match &schema {
            Some(schema) => {
                let data = require_struct(NAME, self.side, schema, value)?;
                for field in &self.fields {
                    if schema.field(field).is_none() {
                        return Err(TransformError::MissingField {
                            transform: NAME,
                            field: field.clone(),
                            part: self.side.name(),
                            schema: " schema",
                        });
                    }
                }
                let mut out = Struct::with_capacity(data.len());
                for (name, v) in data.iter() {
                    if self.fields.iter().any(|f| f == name) {
                        out.push(name.to_owned(), self.masked(name, v)?);
                    } else {
                        out.push(name.to_owned(), v.clone());
                    }
                }
                Value::Struct(out)
            }
            None => {
                let mut entries = require_map(NAME, self.side, value)?;
                for field in &self.fields {
                    if let Some(v) = map_get(&entries, field) {
                        let masked = self.masked(field, v)?;
                        map_put(&mut entries, field, masked);
                    }
                }
                Value::Map(entries)
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let fields = p.required_list("fields");
    let replacement = p.string("replacement");
    if replacement.as_deref() == Some("") {
        p.error(
            "replacement",
            "expected a non-empty replacement (leave it out to mask with empty values)",
        );
    }
    Some(Box::new(MaskField {
        side,
        fields: fields?,
        replacement: replacement.filter(|r| !r.is_empty()),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Decimal, Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};

    fn schema() -> Arc<Schema> {
        Arc::new(
            Schema::struct_builder()
                .field("id", Schema::int64())
                .field("card", Schema::string())
                .field("price", Schema::decimal(2))
                .field("ok", Schema::boolean())
                .build(),
        )
    }

    fn value() -> Value {
        Value::Struct(
            Struct::new()
                .with("id", 7i64)
                .with("card", "4111")
                .with("price", Decimal::parse("12.34").unwrap())
                .with("ok", true),
        )
    }

    #[test]
    fn masks_struct_fields_with_empty_values_and_keeps_the_schema() {
        let chain = chain(json!({"type": "MaskField$Value", "fields": "id,card,price,ok"}));
        let out = apply(&chain, record(Some(schema()), value()));
        assert_eq!(
            out.value,
            Value::Struct(
                Struct::new()
                    .with("id", 0i64)
                    .with("card", "")
                    .with("price", Decimal::parse("0.00").unwrap())
                    .with("ok", false)
            )
        );
        assert_eq!(out.value_schema, Some(schema()));
        let missing =
            super::super::testing::chain(json!({"type": "MaskField$Value", "fields": "cvv"}));
        assert_eq!(
            apply_err(&missing, record(Some(schema()), value())),
            "MaskField: field `cvv` is not in the value schema"
        );
    }

    #[test]
    fn replacement_masks_numbers_and_strings_schemaless() {
        let chain = chain(
            json!({"type": "MaskField$Value", "fields": ["card", "n", "absent"], "replacement": "99"}),
        );
        let v = map(&[
            ("card", Value::from("4111")),
            ("n", Value::from(5i16)),
            ("x", Value::from(1i32)),
        ]);
        let out = apply(&chain, record(None, v));
        assert_eq!(
            out.value,
            map(&[
                ("card", Value::from("99")),
                ("n", Value::from(99i16)),
                ("x", Value::from(1i32))
            ])
        );
        let with_bool = super::super::testing::chain(
            json!({"type": "MaskField$Value", "fields": "ok", "replacement": "x"}),
        );
        assert_eq!(
            apply_err(&with_bool, record(Some(schema()), value())),
            "MaskField: field `ok` is a boolean; expected a number or a string to mask with a replacement"
        );
        let key_chain = super::super::testing::chain(
            json!({"type": "MaskField$Key", "fields": "id", "replacement": "abc"}),
        );
        let r = record(None, Value::Null).with_key(None, map(&[("id", Value::from(1i32))]));
        assert_eq!(
            apply_err(&key_chain, r),
            "MaskField: cannot convert replacement for field `id` \"abc\" to int32: not a number of that type"
        );
    }

    #[test]
    fn config_needs_fields() {
        let errors = config_errors(json!({"type": "MaskField$Value", "replacement": ""}));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["transforms.t.fields", "transforms.t.replacement"]);
    }
}
