//! Header transforms: HeaderFrom (fields to headers), InsertHeader, DropHeaders.
//!
//! Header values are bytes on the wire. A field copied into a header is written as Kafka
//! Connect's SimpleHeaderConverter would for primitives: strings as their UTF-8 text, numbers and
//! booleans as their text, bytes as they are, null as a header without a value; structs, maps and
//! arrays as plain JSON.

use std::collections::HashSet;

use sluice_connector_api::{Header, Value};

use super::cache::SchemaCache;
use super::part::{Side, map_get, require_map, require_struct, struct_get, struct_like};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const HEADER_FROM: &str = "HeaderFrom";

/// A value as header bytes.
pub(crate) fn header_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone().into_bytes()),
        Value::Bytes(b) => Some(b.clone()),
        Value::Struct(_) | Value::Map(_) | Value::Array(_) => {
            Some(value.to_plain_json().to_string().into_bytes())
        }
        other => Some(other.to_string().into_bytes()),
    }
}

/// Copies or moves fields of the key or value into headers.
struct HeaderFrom {
    side: Side,
    fields: Vec<String>,
    headers: Vec<String>,
    remove: bool,
    schemas: SchemaCache,
}

impl Transform for HeaderFrom {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match schema {
            Some(schema) => {
                let data = require_struct(HEADER_FROM, self.side, &schema, value)?;
                for field in &self.fields {
                    if schema.field(field).is_none() {
                        return Err(TransformError::MissingField {
                            transform: HEADER_FROM,
                            field: field.clone(),
                            part: self.side.name(),
                            schema: " schema",
                        });
                    }
                }
                for (field, header) in self.fields.iter().zip(&self.headers) {
                    record.headers.push(Header {
                        key: header.clone(),
                        value: header_bytes(struct_get(&data, field)),
                    });
                }
                if self.remove {
                    let moved: HashSet<&str> = self.fields.iter().map(String::as_str).collect();
                    let schema = self.schemas.get_or_try(&schema, |s| {
                        let kept = s
                            .fields
                            .iter()
                            .filter(|f| !moved.contains(f.name.as_str()))
                            .map(|f| (f.name.clone(), f.schema.clone()))
                            .collect();
                        Ok(struct_like(s, kept))
                    })?;
                    let data = data
                        .iter()
                        .filter(|(name, _)| !moved.contains(name))
                        .map(|(n, v)| (n.to_owned(), v.clone()))
                        .collect();
                    (Some(schema), Value::Struct(data))
                } else {
                    (Some(schema), Value::Struct(data))
                }
            }
            None => {
                let mut entries = require_map(HEADER_FROM, self.side, value)?;
                for (field, header) in self.fields.iter().zip(&self.headers) {
                    record.headers.push(Header {
                        key: header.clone(),
                        value: map_get(&entries, field).and_then(header_bytes),
                    });
                }
                if self.remove {
                    entries.retain(|(k, _)| {
                        !k.as_str()
                            .is_some_and(|k| self.fields.iter().any(|f| f == k))
                    });
                }
                (None, Value::Map(entries))
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn header_from(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let fields = p.required_list("fields");
    let headers = p.required_list("headers");
    let operation = p.one_of("operation", &["move", "copy"], None);
    let (fields, headers) = (fields?, headers?);
    if fields.len() != headers.len() {
        p.error(
            "headers",
            format!(
                "expected as many headers as fields ({}), got {}",
                fields.len(),
                headers.len()
            ),
        );
        return None;
    }
    Some(Box::new(HeaderFrom {
        side,
        fields,
        headers,
        remove: operation? == "move",
        schemas: SchemaCache::default(),
    }))
}

/// Adds a header with a literal value.
struct InsertHeader {
    header: String,
    value: Vec<u8>,
}

impl Transform for InsertHeader {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        record
            .headers
            .push(Header::new(self.header.clone(), self.value.clone()));
        Ok(Some(record))
    }
}

pub(crate) fn insert_header(p: &Props, _: Side) -> Option<Box<dyn Transform>> {
    let header = p.required("header");
    let literal = p.string("value.literal");
    if literal.is_none() {
        p.error("value.literal", super::props::MISSING);
    }
    Some(Box::new(InsertHeader {
        header: header?,
        value: literal?.into_bytes(),
    }))
}

/// Removes every header with one of the keys.
struct DropHeaders {
    headers: HashSet<String>,
}

impl Transform for DropHeaders {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        record.headers.retain(|h| !self.headers.contains(&h.key));
        Ok(Some(record))
    }
}

pub(crate) fn drop_headers(p: &Props, _: Side) -> Option<Box<dyn Transform>> {
    let headers = p.required_list("headers")?;
    Some(Box::new(DropHeaders {
        headers: headers.into_iter().collect(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Header, Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};

    fn order_schema() -> Arc<Schema> {
        Arc::new(
            Schema::struct_builder()
                .name("shop.Order")
                .field("id", Schema::int64())
                .field("trace", Schema::string().optional())
                .build(),
        )
    }

    fn header(r: &super::super::TransformRecord, key: &str) -> Option<Option<Vec<u8>>> {
        r.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.clone())
    }

    #[test]
    fn header_from_moves_struct_fields_and_their_schema() {
        let chain = chain(json!({
            "type": "HeaderFrom$Value", "fields": "id,trace", "headers": "h_id,h_trace",
            "operation": "move",
        }));
        let value = Value::Struct(Struct::new().with("id", 7i64).with("trace", Value::Null));
        let out = apply(&chain, record(Some(order_schema()), value));
        assert_eq!(header(&out, "h_id"), Some(Some(b"7".to_vec())));
        assert_eq!(header(&out, "h_trace"), Some(None));
        let schema = out.value_schema.unwrap();
        assert!(schema.fields.is_empty());
        assert_eq!(schema.name.as_deref(), Some("shop.Order"));
        assert_eq!(out.value, Value::Struct(Struct::new()));
    }

    #[test]
    fn header_from_copies_key_fields_and_schemaless_entries() {
        let chain = chain(json!({
            "type": "HeaderFrom$Key", "fields": ["id"], "headers": ["key_id"], "operation": "copy",
        }));
        let key = Value::Struct(Struct::new().with("id", 7i64).with("trace", "t"));
        let out = apply(
            &chain,
            record(None, Value::Null).with_key(Some(order_schema()), key.clone()),
        );
        assert_eq!(out.key, key);
        assert_eq!(out.key_schema, Some(order_schema()));
        assert_eq!(header(&out, "key_id"), Some(Some(b"7".to_vec())));

        let chain = super::super::testing::chain(json!({
            "type": "HeaderFrom$Value", "fields": "a,b", "headers": "x,y", "operation": "move",
        }));
        let value = map(&[
            ("a", Value::from("one")),
            ("b", map(&[("n", Value::from(1i32))])),
            ("c", Value::from(true)),
        ]);
        let out = apply(&chain, record(None, value));
        assert_eq!(out.value, map(&[("c", Value::from(true))]));
        assert_eq!(header(&out, "x"), Some(Some(b"one".to_vec())));
        assert_eq!(header(&out, "y"), Some(Some(br#"{"n":1}"#.to_vec())));
        assert_eq!(
            apply_err(&chain, record(None, Value::from(1i32))),
            "HeaderFrom: the schemaless value is an int32; expected a map"
        );
    }

    #[test]
    fn header_from_needs_matching_lists_and_known_fields() {
        let errors = config_errors(
            json!({"type": "HeaderFrom$Value", "fields": "a,b", "headers": "x", "operation": "copy"}),
        );
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.headers: expected as many headers as fields (2), got 1"
        );
        let errors = config_errors(
            json!({"type": "HeaderFrom$Value", "fields": "a", "headers": "x", "operation": "cut"}),
        );
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.operation: expected one of move, copy, got `cut`"
        );
        let chain = chain(
            json!({"type": "HeaderFrom$Value", "fields": "nope", "headers": "x", "operation": "copy"}),
        );
        let value = Value::Struct(Struct::new().with("id", 7i64));
        assert_eq!(
            apply_err(&chain, record(Some(order_schema()), value)),
            "HeaderFrom: field `nope` is not in the value schema"
        );
    }

    #[test]
    fn insert_and_drop_headers() {
        let insert =
            chain(json!({"type": "InsertHeader", "header": "source", "value.literal": "sluice"}));
        let drop = super::super::testing::chain(
            json!({"type": "org.apache.kafka.connect.transforms.DropHeaders", "headers": ["a", "source"]}),
        );
        for r in [
            record(
                Some(order_schema()),
                Value::Struct(Struct::new().with("id", 1i64)),
            ),
            record(None, map(&[])),
        ] {
            let mut r = r;
            r.headers = vec![
                Header::new("a", "1"),
                Header::new("b", "2"),
                Header::new("a", "3"),
            ];
            let inserted = apply(&insert, r.clone());
            assert_eq!(
                inserted.headers.last(),
                Some(&Header::new("source", "sluice"))
            );
            assert_eq!(inserted.value, r.value);
            let dropped = apply(&drop, inserted);
            assert_eq!(dropped.headers, vec![Header::new("b", "2")]);
        }
        let errors = config_errors(json!({"type": "InsertHeader"}));
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["transforms.t.header", "transforms.t.value.literal"]
        );
        let errors = config_errors(json!({"type": "DropHeaders", "headers": []}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.headers: expected a non-empty list"
        );
    }
}
