//! `redact`: replaces the configured top-level fields of JSON object values. Strings become
//! `replacement` (default empty), numbers 0, booleans false: what Kafka Connect's
//! `MaskField$Value` does with `replacement` set, for schemaless JSON.

use std::borrow::Cow;

use sluice_plugin_sdk::transform::{Config, ConfigField, Error, Record, Transform};

struct Redact {
    fields: Vec<String>,
    /// `replacement` as JSON text (a quoted string).
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
        let replacement = config.get("replacement").unwrap_or_default();
        Ok(Self {
            fields,
            replacement: serde_json::Value::from(replacement).to_string(),
        })
    }

    fn apply(&mut self, mut record: Record) -> Result<Option<Record>, Error> {
        // Only the named fields are rewritten; the rest of the value is copied as it is.
        // Tombstones and non-objects pass through unchanged, as with MaskField.
        record.edit_value_fields(|name, raw| {
            if !self.fields.iter().any(|f| f == name) {
                return None;
            }
            // The first byte of a JSON value tells its type.
            Some(match raw.as_bytes().first() {
                Some(b'"') => Cow::Borrowed(self.replacement.as_str()),
                Some(b'-' | b'0'..=b'9') => Cow::Borrowed("0"),
                Some(b't' | b'f') => Cow::Borrowed("false"),
                Some(b'[') => Cow::Borrowed("[]"),
                Some(b'{') => Cow::Borrowed("{}"),
                _ => Cow::Borrowed("null"),
            })
        });
        Ok(Some(record))
    }
}

sluice_plugin_sdk::export_transform!(Redact);
