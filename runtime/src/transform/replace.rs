//! ReplaceField: keeps (`include`), drops (`exclude`) and renames (`renames: a:b,c:d`) top-level
//! fields of a struct (with schema) or map (schemaless). Tombstones pass through.

use std::collections::HashMap;

use sluice_connector_api::{Struct, Value};

use super::cache::SchemaCache;
use super::part::{Side, require_map, require_struct, struct_like};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "ReplaceField";

struct ReplaceField {
    side: Side,
    include: Vec<String>,
    exclude: Vec<String>,
    renames: HashMap<String, String>,
    schemas: SchemaCache,
}

impl ReplaceField {
    fn keeps(&self, name: &str) -> bool {
        !self.exclude.iter().any(|e| e == name)
            && (self.include.is_empty() || self.include.iter().any(|i| i == name))
    }

    fn renamed<'a>(&'a self, name: &'a str) -> &'a str {
        self.renames.get(name).map_or(name, String::as_str)
    }
}

impl Transform for ReplaceField {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        if self.side.value(&record).is_null() {
            return Ok(Some(record));
        }
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match schema {
            Some(schema) => {
                let data = require_struct(NAME, self.side, &schema, value)?;
                let out_schema = self.schemas.get_or_try(&schema, |s| {
                    let fields = s
                        .fields
                        .iter()
                        .filter(|f| self.keeps(&f.name))
                        .map(|f| (self.renamed(&f.name).to_owned(), f.schema.clone()))
                        .collect();
                    Ok(struct_like(s, fields))
                })?;
                let mut out = Struct::with_capacity(out_schema.fields.len());
                for field in &schema.fields {
                    if self.keeps(&field.name) {
                        let v = data.get(&field.name).cloned().unwrap_or(Value::Null);
                        out.push(self.renamed(&field.name).to_owned(), v);
                    }
                }
                (Some(out_schema), Value::Struct(out))
            }
            None => {
                let entries = require_map(NAME, self.side, value)?;
                let out = entries
                    .into_iter()
                    .filter(|(k, _)| k.as_str().is_none_or(|k| self.keeps(k)))
                    .map(|(k, v)| match k.as_str() {
                        Some(name) => (Value::from(self.renamed(name)), v),
                        None => (k, v),
                    })
                    .collect();
                (None, Value::Map(out))
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    // `blacklist`/`whitelist` are the names before Kafka 2.7, still accepted there.
    let exclude = p
        .list("exclude")
        .or_else(|| p.list("blacklist"))
        .unwrap_or_default();
    let include = p
        .list("include")
        .or_else(|| p.list("whitelist"))
        .unwrap_or_default();
    let mut renames = HashMap::new();
    let mut bad = Vec::new();
    for pair in p.list("renames").unwrap_or_default() {
        match pair.split_once(':') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                renames.insert(from.trim().to_owned(), to.trim().to_owned());
            }
            _ => bad.push(pair),
        }
    }
    if !bad.is_empty() {
        p.error(
            "renames",
            format!("expected `old:new` pairs, got `{}`", bad.join("`, `")),
        );
        return None;
    }
    Some(Box::new(ReplaceField {
        side,
        include,
        exclude,
        renames,
        schemas: SchemaCache::default(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};

    #[test]
    fn excludes_and_renames_struct_fields_and_schema() {
        let schema = Arc::new(
            Schema::struct_builder()
                .name("shop.Order")
                .field("id", Schema::int64())
                .field("secret", Schema::string())
                .field("amt", Schema::float64().optional())
                .build(),
        );
        let chain = chain(
            json!({"type": "ReplaceField$Value", "exclude": "secret", "renames": ["amt:amount", "id:order_id"]}),
        );
        let value = Value::Struct(
            Struct::new()
                .with("id", 1i64)
                .with("secret", "s")
                .with("amt", 2.5f64),
        );
        let out = apply(&chain, record(Some(schema), value));
        assert_eq!(
            out.value,
            Value::Struct(Struct::new().with("order_id", 1i64).with("amount", 2.5f64))
        );
        let s = out.value_schema.unwrap();
        let names: Vec<&str> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["order_id", "amount"]);
        assert_eq!(*s.fields[1].schema, Schema::float64().optional());
        assert_eq!(s.name.as_deref(), Some("shop.Order"));
        assert!(s.validate_value(&out.value).is_ok());
    }

    #[test]
    fn includes_schemaless_key_entries() {
        let chain =
            chain(json!({"type": "ReplaceField$Key", "include": "a,b", "renames": "b:bee"}));
        let key = map(&[
            ("a", Value::from(1i32)),
            ("b", Value::from(2i32)),
            ("c", Value::from(3i32)),
        ]);
        let out = apply(&chain, record(None, Value::Null).with_key(None, key));
        assert_eq!(
            out.key,
            map(&[("a", Value::from(1i32)), ("bee", Value::from(2i32))])
        );
        let tombstone = record(None, Value::Null);
        assert_eq!(apply(&chain, tombstone.clone()), tombstone);
        let wrong = record(Some(Arc::new(Schema::string())), Value::Null)
            .with_key(Some(Arc::new(Schema::string())), Value::from("k"));
        assert_eq!(
            apply_err(&chain, wrong),
            "ReplaceField: the key schema is a string; expected a struct schema"
        );
    }

    #[test]
    fn bad_renames_are_named() {
        let errors = config_errors(json!({"type": "ReplaceField$Value", "renames": "a:b,c"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.renames: expected `old:new` pairs, got `c`"
        );
    }
}
