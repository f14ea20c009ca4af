//! `redact`: replaces the configured top-level fields of JSON object values. Strings become
//! `replacement` (default empty), numbers 0, booleans false: what Kafka Connect's
//! `MaskField$Value` does with `replacement` set, for schemaless JSON.

use serde_json::Value;
use sluice_plugin_sdk::transform::{Config, ConfigField, Error, Record, Transform};

struct Redact {
    fields: Vec<String>,
    replacement: String,
}

impl Transform for Redact {
    fn spec() -> Vec<ConfigField> {
        vec![
            ConfigField::new(
                "fields",
                "list",
                "Top-level fields of the value to replace.",
            )
            .required(),
            ConfigField::new("replacement", "string", "What string fields become.").default("\"\""),
        ]
    }

    fn open(config: &Config) -> Result<Self, Error> {
        let fields = config.list("fields");
        if fields.is_empty() {
            return Err(Error::config("fields", "expected at least one field"));
        }
        Ok(Self {
            fields,
            replacement: config.get("replacement").unwrap_or_default().to_owned(),
        })
    }

    fn apply(&mut self, mut record: Record) -> Result<Option<Record>, Error> {
        let Some(Value::Object(mut value)) = record.value_json() else {
            // Tombstones and non-objects pass through, as with MaskField.
            return Ok(Some(record));
        };
        for field in &self.fields {
            if let Some(v) = value.get_mut(field) {
                *v = match v {
                    Value::String(_) => Value::String(self.replacement.clone()),
                    Value::Number(_) => Value::from(0),
                    Value::Bool(_) => Value::Bool(false),
                    Value::Array(_) => Value::Array(Vec::new()),
                    Value::Object(_) => Value::Object(Default::default()),
                    Value::Null => Value::Null,
                };
            }
        }
        record.set_value_json(&Value::Object(value));
        Ok(Some(record))
    }
}

sluice_plugin_sdk::export_transform!(Redact);
