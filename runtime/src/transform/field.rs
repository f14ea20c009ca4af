//! Transforms that reshape a key or value as a whole: ValueToKey, ExtractField, HoistField and
//! SetSchemaMetadata.

use sluice_connector_api::{Schema, SchemaRef, Struct, Value};

use super::cache::SchemaCache;
use super::part::{Side, map_get, require_map, require_struct, struct_get, struct_like};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

fn missing(transform: &'static str, field: &str, side: Side) -> TransformError {
    TransformError::MissingField {
        transform,
        field: field.to_owned(),
        part: side.name(),
        schema: " schema",
    }
}

/// ValueToKey: the key becomes a struct (or map) of the listed value fields.
struct ValueToKey {
    fields: Vec<String>,
    schemas: SchemaCache,
}

impl Transform for ValueToKey {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        const NAME: &str = "ValueToKey";
        let value = std::mem::replace(&mut record.value, Value::Null);
        match record.value_schema.clone() {
            Some(schema) => {
                let data = require_struct(NAME, Side::Value, &schema, value)?;
                let key_schema = self.schemas.get_or_try(&schema, |s| {
                    let mut fields = Vec::with_capacity(self.fields.len());
                    for name in &self.fields {
                        let field = s
                            .field(name)
                            .ok_or_else(|| missing(NAME, name, Side::Value))?;
                        fields.push((name.clone(), field.schema.clone()));
                    }
                    Ok(struct_like(&Schema::struct_builder().build(), fields))
                })?;
                let mut key = Struct::with_capacity(self.fields.len());
                for name in &self.fields {
                    key.push(name, struct_get(&data, name).clone());
                }
                record.key_schema = Some(key_schema);
                record.key = Value::Struct(key);
                record.value = Value::Struct(data);
            }
            None => {
                let entries = require_map(NAME, Side::Value, value)?;
                let key = self
                    .fields
                    .iter()
                    .map(|name| {
                        (
                            Value::from(name.as_str()),
                            map_get(&entries, name).cloned().unwrap_or(Value::Null),
                        )
                    })
                    .collect();
                record.key_schema = None;
                record.key = Value::Map(key);
                record.value = Value::Map(entries);
            }
        }
        Ok(Some(record))
    }
}

pub(crate) fn value_to_key(p: &Props, _: Side) -> Option<Box<dyn Transform>> {
    let fields = p.required_list("fields")?;
    Some(Box::new(ValueToKey {
        fields,
        schemas: SchemaCache::default(),
    }))
}

/// ExtractField: the key or value becomes one of its fields; with `field.syntax.version: V2`
/// (KIP-821) `field` is a dotted path into nested structs or maps (`` `a.b` `` for a name with
/// dots). A missing or null step gives null.
struct ExtractField {
    side: Side,
    /// The path; one step with the default syntax V1.
    path: Vec<String>,
}

impl ExtractField {
    fn display(&self) -> String {
        self.path.join(".")
    }
}

impl Transform for ExtractField {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        const NAME: &str = "ExtractField";
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match schema {
            Some(schema) => {
                super::part::require_struct_schema(NAME, self.side, &schema)?;
                // The schema of the last step; every step before it must be a struct.
                let mut field_schema = schema.clone();
                for (i, step) in self.path.iter().enumerate() {
                    if i > 0 && field_schema.kind != sluice_connector_api::SchemaType::Struct {
                        return Err(missing(NAME, &self.display(), self.side));
                    }
                    field_schema = field_schema
                        .field(step)
                        .ok_or_else(|| missing(NAME, &self.display(), self.side))?
                        .schema
                        .clone();
                }
                let mut current = value;
                for step in &self.path {
                    current = match current {
                        Value::Struct(s) => struct_get(&s, step).clone(),
                        Value::Null => Value::Null,
                        other => {
                            require_struct(NAME, self.side, &schema, other)?;
                            Value::Null
                        }
                    };
                }
                (Some(field_schema), current)
            }
            None if value.is_null() => (None, Value::Null),
            None => {
                let mut current = Value::Map(require_map(NAME, self.side, value)?);
                for step in &self.path {
                    current = match &current {
                        Value::Map(entries) => {
                            map_get(entries, step).cloned().unwrap_or(Value::Null)
                        }
                        Value::Struct(s) => s.get(step).cloned().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                }
                (None, current)
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

/// Splits a KIP-821 (V2) field path: dots separate steps; a step in backticks may hold dots,
/// and `\`` is a backtick inside it.
fn parse_path_v2(path: &str) -> Result<Vec<String>, String> {
    let mut steps = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let mut step = String::new();
        if chars.peek() == Some(&'`') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') if chars.peek() == Some(&'`') => {
                        chars.next();
                        step.push('`');
                    }
                    Some('`') => break,
                    Some(c) => step.push(c),
                    None => return Err(format!("unclosed backtick in `{path}`")),
                }
            }
            match chars.next() {
                None => {
                    steps.push(step);
                    return Ok(steps);
                }
                Some('.') => {}
                Some(c) => {
                    return Err(format!(
                        "`{c}` after a closing backtick in `{path}`; expected `.` or the end"
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    Some('.') => break,
                    Some(c) => step.push(c),
                    None => {
                        if step.is_empty() {
                            return Err(format!("empty step in `{path}`"));
                        }
                        steps.push(step);
                        return Ok(steps);
                    }
                }
            }
        }
        if step.is_empty() {
            return Err(format!("empty step in `{path}`"));
        }
        steps.push(step);
    }
}

pub(crate) fn extract_field(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let field = p.required("field");
    let syntax = p.one_of("field.syntax.version", &["V1", "V2"], Some("V1"));
    let field = field?;
    let path = match syntax.as_deref() {
        Some("V2") => match parse_path_v2(&field) {
            Ok(path) => path,
            Err(message) => {
                p.error("field", message);
                return None;
            }
        },
        _ => vec![field],
    };
    Some(Box::new(ExtractField { side, path }))
}

/// HoistField: wraps the key or value in a struct (or map) with one field.
struct HoistField {
    side: Side,
    field: String,
    schemas: SchemaCache,
}

impl Transform for HoistField {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match schema {
            Some(schema) => {
                let wrapped = self.schemas.get_or_try(&schema, |_| {
                    Ok(Schema::struct_builder()
                        .field_ref(self.field.clone(), schema.clone())
                        .build())
                })?;
                (
                    Some(wrapped),
                    Value::Struct(Struct::new().and(self.field.clone(), value)),
                )
            }
            None => (
                None,
                Value::Map(vec![(Value::from(self.field.as_str()), value)]),
            ),
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn hoist_field(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let field = p.required("field")?;
    Some(Box::new(HoistField {
        side,
        field,
        schemas: SchemaCache::default(),
    }))
}

/// SetSchemaMetadata: sets the name and/or version of the key or value schema.
struct SetSchemaMetadata {
    side: Side,
    name: Option<String>,
    version: Option<i32>,
    schemas: SchemaCache,
}

impl Transform for SetSchemaMetadata {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let (schema, value) = self.side.take(&mut record);
        let Some(schema) = schema else {
            return Err(TransformError::SchemaRequired {
                transform: "SetSchemaMetadata",
                part: self.side.name(),
                purpose: "setting its name or version",
            });
        };
        let updated: SchemaRef = self.schemas.get_or_try(&schema, |s| {
            let mut out = s.clone();
            if let Some(name) = &self.name {
                out.name = Some(name.clone());
            }
            if let Some(version) = self.version {
                out.version = Some(version);
            }
            Ok(out)
        })?;
        self.side.set(&mut record, Some(updated), value);
        Ok(Some(record))
    }
}

pub(crate) fn set_schema_metadata(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let name = p.string("schema.name").filter(|n| !n.is_empty());
    let version = p.int("schema.version");
    let version = match version.map(i32::try_from) {
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            p.error("schema.version", "expected a 32-bit integer");
            return None;
        }
        None => None,
    };
    if name.is_none() && version.is_none() && p.string("schema.version").is_none() {
        p.error(
            "schema.name",
            "missing required field; set schema.name, schema.version or both",
        );
        return None;
    }
    Some(Box::new(SetSchemaMetadata {
        side,
        name,
        version,
        schemas: SchemaCache::default(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};

    fn order() -> Arc<Schema> {
        Arc::new(
            Schema::struct_builder()
                .name("shop.Order")
                .field("id", Schema::int64())
                .field("customer", Schema::string().optional())
                .field("qty", Schema::int32())
                .build(),
        )
    }

    fn order_value() -> Value {
        Value::Struct(
            Struct::new()
                .with("id", 7i64)
                .with("customer", "ann")
                .with("qty", 2i32),
        )
    }

    #[test]
    fn value_to_key_with_schema() {
        let chain = chain(json!({"type": "ValueToKey", "fields": "customer,id"}));
        let out = apply(&chain, record(Some(order()), order_value()));
        assert_eq!(
            out.key,
            Value::Struct(Struct::new().with("customer", "ann").with("id", 7i64))
        );
        let ks = out.key_schema.unwrap();
        assert_eq!(ks.name, None);
        assert_eq!(
            *ks.field("customer").unwrap().schema,
            Schema::string().optional()
        );
        assert_eq!(ks.fields[1].name, "id");
        assert_eq!(out.value, order_value());
        let missing = super::super::testing::chain(json!({"type": "ValueToKey", "fields": "nope"}));
        assert_eq!(
            apply_err(&missing, record(Some(order()), order_value())),
            "ValueToKey: field `nope` is not in the value schema"
        );
    }

    #[test]
    fn value_to_key_schemaless() {
        let chain = chain(
            json!({"type": "org.apache.kafka.connect.transforms.ValueToKey", "fields": ["a", "b"]}),
        );
        let out = apply(
            &chain,
            record(
                None,
                map(&[("a", Value::from(1i32)), ("c", Value::from(3i32))]),
            ),
        );
        assert_eq!(
            out.key,
            map(&[("a", Value::from(1i32)), ("b", Value::Null)])
        );
        assert_eq!(out.key_schema, None);
        assert_eq!(
            apply_err(&chain, record(None, Value::Null)),
            "ValueToKey: the schemaless value is null; expected a map"
        );
        let errors = config_errors(json!({"type": "ValueToKey"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.fields: missing required field"
        );
    }

    #[test]
    fn extract_field_with_schema_and_schemaless() {
        let chain = chain(json!({"type": "ExtractField$Value", "field": "customer"}));
        let out = apply(&chain, record(Some(order()), order_value()));
        assert_eq!(out.value, Value::from("ann"));
        assert_eq!(*out.value_schema.unwrap(), Schema::string().optional());
        let null = apply(
            &chain,
            record(
                Some(Arc::new(Schema {
                    optional: true,
                    ..(*order()).clone()
                })),
                Value::Null,
            ),
        );
        assert_eq!(null.value, Value::Null);
        assert_eq!(*null.value_schema.unwrap(), Schema::string().optional());

        let key_chain =
            super::super::testing::chain(json!({"type": "ExtractField$Key", "field": "id"}));
        let r = record(None, Value::Null).with_key(None, map(&[("id", Value::from(9i64))]));
        let out = apply(&key_chain, r);
        assert_eq!(out.key, Value::from(9i64));
        assert_eq!(out.key_schema, None);
        let r = record(None, Value::Null).with_key(Some(order()), order_value());
        assert_eq!(apply(&key_chain, r).key, Value::from(7i64));
        let missing =
            super::super::testing::chain(json!({"type": "ExtractField$Value", "field": "nope"}));
        assert_eq!(
            apply_err(&missing, record(Some(order()), order_value())),
            "ExtractField: field `nope` is not in the value schema"
        );
        let errors = config_errors(
            json!({"type": "ExtractField$Value", "field": "a", "field.syntax.version": "V3"}),
        );
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.field.syntax.version: expected one of V1, V2, got `V3`"
        );
        let errors = config_errors(
            json!({"type": "ExtractField$Value", "field": "a..b", "field.syntax.version": "V2"}),
        );
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.field: empty step in `a..b`"
        );
    }

    #[test]
    fn extract_field_v2_follows_nested_paths() {
        let inner = Arc::new(
            Schema::struct_builder()
                .field("city", Schema::string())
                .field("a.b", Schema::int32())
                .build(),
        );
        let outer = Arc::new(
            Schema::struct_builder()
                .field("id", Schema::int64())
                .field_ref("address", inner.clone())
                .build(),
        );
        let value = Value::Struct(Struct::new().with("id", 1i64).with(
            "address",
            Value::Struct(Struct::new().with("city", "Oslo").with("a.b", 5i32)),
        ));
        let city = chain(
            json!({"type": "ExtractField$Value", "field": "address.city", "field.syntax.version": "V2"}),
        );
        let out = apply(&city, record(Some(outer.clone()), value.clone()));
        assert_eq!(out.value, Value::from("Oslo"));
        assert_eq!(*out.value_schema.unwrap(), Schema::string());
        let dotted = chain(
            json!({"type": "ExtractField$Value", "field": "address.`a.b`", "field.syntax.version": "V2"}),
        );
        assert_eq!(
            apply(&dotted, record(Some(outer.clone()), value)).value,
            Value::Int32(5)
        );
        // A null step gives null; a path not in the schema is an error naming it.
        let null_address =
            Value::Struct(Struct::new().with("id", 1i64).with("address", Value::Null));
        assert_eq!(
            apply(&city, record(Some(outer.clone()), null_address)).value,
            Value::Null
        );
        let wrong = chain(
            json!({"type": "ExtractField$Value", "field": "address.zip", "field.syntax.version": "V2"}),
        );
        let v = Value::Struct(Struct::new().with("id", 1i64).with("address", Value::Null));
        assert_eq!(
            apply_err(&wrong, record(Some(outer), v)),
            "ExtractField: field `address.zip` is not in the value schema"
        );
        // Schemaless: nested maps, missing steps give null.
        let nested = map(&[("address", map(&[("city", Value::from("Rome"))]))]);
        assert_eq!(
            apply(&city, record(None, nested.clone())).value,
            Value::from("Rome")
        );
        assert_eq!(apply(&wrong, record(None, nested)).value, Value::Null);
    }

    #[test]
    fn v2_paths_split_on_dots_outside_backticks() {
        assert_eq!(super::parse_path_v2("a.b").unwrap(), ["a", "b"]);
        assert_eq!(super::parse_path_v2("`a.b`.c").unwrap(), ["a.b", "c"]);
        assert_eq!(super::parse_path_v2("`x\\`y`").unwrap(), ["x`y"]);
        assert!(super::parse_path_v2("`open").is_err());
        assert!(super::parse_path_v2("a.").is_err());
    }

    #[test]
    fn hoist_field_wraps() {
        let chain = chain(json!({"type": "HoistField$Value", "field": "line"}));
        let out = apply(
            &chain,
            record(Some(Arc::new(Schema::string())), Value::from("hello")),
        );
        assert_eq!(
            out.value,
            Value::Struct(Struct::new().with("line", "hello"))
        );
        let s = out.value_schema.unwrap();
        assert_eq!(s.fields.len(), 1);
        assert_eq!(*s.field("line").unwrap().schema, Schema::string());
        assert!(s.validate_value(&out.value).is_ok());
        let out = apply(&chain, record(None, Value::from(5i64)));
        assert_eq!(out.value, map(&[("line", Value::from(5i64))]));
        assert_eq!(out.value_schema, None);
    }

    #[test]
    fn set_schema_metadata_needs_a_schema() {
        let chain = chain(
            json!({"type": "SetSchemaMetadata$Value", "schema.name": "shop.OrderV2", "schema.version": "3"}),
        );
        let out = apply(&chain, record(Some(order()), order_value()));
        let s = out.value_schema.unwrap();
        assert_eq!(s.name.as_deref(), Some("shop.OrderV2"));
        assert_eq!(s.version, Some(3));
        assert_eq!(s.fields, order().fields);
        assert_eq!(out.value, order_value());
        assert_eq!(
            apply_err(&chain, record(None, map(&[]))),
            "SetSchemaMetadata: the value has no schema; setting its name or version needs one"
        );
        let key_chain = super::super::testing::chain(
            json!({"type": "SetSchemaMetadata$Key", "schema.version": 4}),
        );
        let out = apply(
            &key_chain,
            record(None, Value::Null).with_key(Some(Arc::new(Schema::int64())), Value::from(1i64)),
        );
        assert_eq!(*out.key_schema.unwrap(), Schema::int64().versioned(4));
        let errors = config_errors(json!({"type": "SetSchemaMetadata$Value"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.schema.name: missing required field; set schema.name, schema.version or both"
        );
        let errors =
            config_errors(json!({"type": "SetSchemaMetadata$Value", "schema.version": "x"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.schema.version: expected an integer, got \"x\""
        );
    }
}
