//! Flatten: nested structs (with schema) or maps (schemaless) become top-level fields named by
//! their path joined with `delimiter` (default `.`). Arrays stay as they are. A field under an
//! optional struct becomes optional. Null values pass through (with the flattened schema).

use sluice_connector_api::{Schema, SchemaRef, SchemaType, Struct, Value};

use super::cache::SchemaCache;
use super::part::{Side, optional, require_map, require_struct, struct_like};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "Flatten";

struct Flatten {
    side: Side,
    delimiter: String,
    schemas: SchemaCache,
}

impl Flatten {
    fn name(&self, prefix: &str, name: &str) -> String {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}{}{name}", self.delimiter)
        }
    }

    fn flatten_schema(
        &self,
        schema: &Schema,
        prefix: &str,
        parent_optional: bool,
        out: &mut Vec<(String, SchemaRef)>,
    ) {
        for field in &schema.fields {
            let name = self.name(prefix, &field.name);
            let optional_field = parent_optional || field.schema.optional;
            if field.schema.kind == SchemaType::Struct {
                self.flatten_schema(&field.schema, &name, optional_field, out);
            } else if optional_field {
                out.push((name, optional(&field.schema)));
            } else {
                out.push((name, field.schema.clone()));
            }
        }
    }

    fn flatten_struct(
        &self,
        schema: &Schema,
        value: Option<&Struct>,
        prefix: &str,
        out: &mut Struct,
    ) {
        for field in &schema.fields {
            let name = self.name(prefix, &field.name);
            let v = value
                .and_then(|s| s.get(&field.name))
                .unwrap_or(&Value::Null);
            if field.schema.kind == SchemaType::Struct {
                self.flatten_struct(&field.schema, v.as_struct(), &name, out);
            } else {
                out.push(name, v.clone());
            }
        }
    }

    fn flatten_map(
        &self,
        entries: Vec<(Value, Value)>,
        prefix: &str,
        out: &mut Vec<(Value, Value)>,
    ) {
        for (k, v) in entries {
            let key = match &k {
                Value::String(s) => self.name(prefix, s),
                other => self.name(prefix, &other.to_string()),
            };
            match v {
                Value::Map(inner) => self.flatten_map(inner, &key, out),
                Value::Struct(s) => {
                    let inner = s.iter().map(|(n, v)| (Value::from(n), v.clone())).collect();
                    self.flatten_map(inner, &key, out);
                }
                other => out.push((Value::String(key), other)),
            }
        }
    }
}

impl Transform for Flatten {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match schema {
            Some(schema) => {
                super::part::require_struct_schema(NAME, self.side, &schema)?;
                let flat_schema = self.schemas.get_or_try(&schema, |s| {
                    let mut fields = Vec::new();
                    self.flatten_schema(s, "", false, &mut fields);
                    Ok(struct_like(s, fields))
                })?;
                if value.is_null() {
                    (Some(flat_schema), Value::Null)
                } else {
                    let data = require_struct(NAME, self.side, &schema, value)?;
                    let mut out = Struct::with_capacity(flat_schema.fields.len());
                    self.flatten_struct(&schema, Some(&data), "", &mut out);
                    (Some(flat_schema), Value::Struct(out))
                }
            }
            None if value.is_null() => (None, Value::Null),
            None => {
                let entries = require_map(NAME, self.side, value)?;
                let mut out = Vec::with_capacity(entries.len());
                self.flatten_map(entries, "", &mut out);
                (None, Value::Map(out))
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let delimiter = p.string_or("delimiter", ".");
    Some(Box::new(Flatten {
        side,
        delimiter,
        schemas: SchemaCache::default(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, map, record};

    #[test]
    fn flattens_nested_structs_and_their_schema() {
        let address = Schema::struct_builder()
            .field("city", Schema::string())
            .field(
                "geo",
                Schema::struct_builder()
                    .field("lat", Schema::float64())
                    .build(),
            )
            .optional()
            .build();
        let schema = Arc::new(
            Schema::struct_builder()
                .name("shop.Customer")
                .field("id", Schema::int64())
                .field("address", address)
                .field("tags", Schema::array(Schema::string()))
                .build(),
        );
        let value = Value::Struct(
            Struct::new()
                .with("id", 1i64)
                .with(
                    "address",
                    Struct::new()
                        .with("city", "Oslo")
                        .with("geo", Struct::new().with("lat", 59.9f64)),
                )
                .with("tags", Value::Array(vec![Value::from("a")])),
        );
        let chain = chain(json!({"type": "Flatten$Value", "delimiter": "_"}));
        let out = apply(&chain, record(Some(schema.clone()), value));
        assert_eq!(
            out.value,
            Value::Struct(
                Struct::new()
                    .with("id", 1i64)
                    .with("address_city", "Oslo")
                    .with("address_geo_lat", 59.9f64)
                    .with("tags", Value::Array(vec![Value::from("a")]))
            )
        );
        let s = out.value_schema.unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["id", "address_city", "address_geo_lat", "tags"]);
        assert_eq!(*s.field("id").unwrap().schema, Schema::int64());
        // Under an optional struct, fields become optional.
        assert_eq!(
            *s.field("address_city").unwrap().schema,
            Schema::string().optional()
        );
        assert_eq!(
            *s.field("address_geo_lat").unwrap().schema,
            Schema::float64().optional()
        );
        assert_eq!(s.name.as_deref(), Some("shop.Customer"));
        // A null nested struct flattens to null fields, valid against the flat schema.
        let out = apply(
            &chain,
            record(
                Some(schema),
                Value::Struct(
                    Struct::new()
                        .with("id", 2i64)
                        .with("address", Value::Null)
                        .with("tags", Value::Array(vec![])),
                ),
            ),
        );
        assert_eq!(
            out.value.as_struct().unwrap().get("address_city"),
            Some(&Value::Null)
        );
        assert!(s.validate_value(&out.value).is_ok());
    }

    #[test]
    fn flattens_schemaless_maps_with_the_default_delimiter() {
        let chain = chain(json!({"type": "Flatten$Key"}));
        let key = map(&[
            (
                "a",
                map(&[
                    ("b", Value::from(1i32)),
                    ("c", map(&[("d", Value::from("x"))])),
                ]),
            ),
            ("e", Value::Array(vec![Value::from(1i32)])),
        ]);
        let out = apply(&chain, record(None, Value::Null).with_key(None, key));
        assert_eq!(
            out.key,
            map(&[
                ("a.b", Value::from(1i32)),
                ("a.c.d", Value::from("x")),
                ("e", Value::Array(vec![Value::from(1i32)]))
            ])
        );
        let tombstone = record(None, Value::Null);
        assert_eq!(apply(&chain, tombstone.clone()), tombstone);
        let wrong = record(None, Value::Null).with_key(None, Value::from(1i32));
        assert_eq!(
            apply_err(&chain, wrong),
            "Flatten: the schemaless key is an int32; expected a map"
        );
    }
}
