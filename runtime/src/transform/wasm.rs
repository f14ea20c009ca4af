//! WebAssembly transform plugins as chain steps: `type: wasm` with `plugin: <path>`, or the name
//! of a transform plugin from the worker's `plugins_dir`.
//!
//! Records cross as schemaless JSON (Kafka Connect's JsonConverter with schemas off). A key or
//! value the plugin returns unchanged (same bytes) keeps its original value and schema. A changed
//! one is read back as schemaless JSON and, when the record had a schema, fitted to it: if every
//! field still has a value of the schema's type (strings for decimals, numbers for timestamps,
//! as they were written), the schema is kept; otherwise the result is schemaless.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value as Json};
use sluice_connector_api::{ConnectorConfig, ErrorKind, FieldError, SchemaRef, SchemaType, Value};
use sluice_wasm::{Batch, LoadedPlugin, Meta, RecordView, WasmTransform};

use super::{Transform, TransformError, TransformRecord};

/// The transform type that names its component with `plugin`.
pub(crate) const WASM_TYPE: &str = "wasm";

/// Keys of a transform entry that belong to the chain, not to the plugin.
const CHAIN_KEYS: &[&str] = &["type", "predicate", "negate"];

/// The plugin a transform type names: `wasm` (with `plugin`), or a registered plugin's name.
/// `None` when the type is not a WASM transform.
pub(crate) fn is_wasm_type(type_name: &str) -> bool {
    type_name == WASM_TYPE || sluice_wasm::named_transform(type_name).is_some()
}

/// Builds the step; errors are relative to the transform entry (`plugin`, `fields`, ...).
pub(crate) fn build(
    type_name: &str,
    props: &Map<String, Json>,
) -> Result<Box<dyn Transform>, Vec<FieldError>> {
    let config: Map<String, Json> = props
        .iter()
        .filter(|(k, _)| !CHAIN_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (plugin, with_path): (Arc<LoadedPlugin>, bool) = if type_name == WASM_TYPE {
        let Some(path) = config.get(sluice_wasm::PLUGIN_FIELD).and_then(Json::as_str) else {
            return Err(vec![FieldError::new(
                sluice_wasm::PLUGIN_FIELD,
                "missing required field; expected the path of a WebAssembly component (.wasm)",
            )]);
        };
        let plugin = sluice_wasm::load(path.as_ref())
            .map_err(|e| vec![FieldError::new(sluice_wasm::PLUGIN_FIELD, e.to_string())])?;
        (plugin, true)
    } else {
        match sluice_wasm::named_transform(type_name) {
            Some(plugin) => (plugin, false),
            None => return Err(vec![FieldError::new("type", "not a WASM transform")]),
        }
    };
    if plugin.kind() != sluice_wasm::PluginKind::Transform {
        return Err(vec![FieldError::new(
            if with_path {
                sluice_wasm::PLUGIN_FIELD
            } else {
                "type"
            },
            format!(
                "plugin {} is a {} plugin; a transform needs a transform plugin",
                plugin.name(),
                plugin.kind().as_str()
            ),
        )]);
    }
    let config: ConnectorConfig = plugin.spec().config_spec(with_path).validate(&config)?;
    let inner = WasmTransform::new(plugin, &config, "").map_err(|e| {
        vec![FieldError::new(
            if with_path {
                sluice_wasm::PLUGIN_FIELD
            } else {
                "type"
            },
            e.to_string(),
        )]
    })?;
    Ok(Box::new(WasmStep {
        inner,
        spare: Mutex::new(None),
    }))
}

struct WasmStep {
    inner: WasmTransform,
    /// The last batch's buffers, reused for the next (a batch of a thousand records is some
    /// hundred kilobytes: allocating them afresh costs page faults every call).
    spare: Mutex<Option<Batch>>,
}

fn plugin_error(e: &sluice_wasm::WasmError) -> TransformError {
    TransformError::Plugin {
        kind: e.kind(),
        message: e.to_string(),
    }
}

impl Transform for WasmStep {
    fn apply(&self, record: TransformRecord) -> Result<Option<TransformRecord>, TransformError> {
        self.apply_batch(vec![record]).pop().unwrap_or_else(|| {
            Err(TransformError::record(
                "wasm",
                "the plugin returned nothing",
            ))
        })
    }

    fn apply_batch(
        &self,
        records: Vec<TransformRecord>,
    ) -> Vec<Result<Option<TransformRecord>, TransformError>> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut batch = match spare {
            Some(mut batch) => {
                batch.clear();
                batch
            }
            None => Batch::with_capacity(records.len()),
        };
        let members: Vec<Members> = records.iter().map(|r| pack(r, &mut batch)).collect();
        let out = self.apply_packed(records, &batch, members);
        *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = Some(batch);
        out
    }
}

impl WasmStep {
    fn apply_packed(
        &self,
        records: Vec<TransformRecord>,
        batch: &Batch,
        members: Vec<Members>,
    ) -> Vec<Result<Option<TransformRecord>, TransformError>> {
        match self.inner.apply(batch) {
            Ok(results) => records
                .into_iter()
                .zip(members)
                .enumerate()
                .map(|(i, (original, members))| match results.get(i) {
                    Ok(out) => Ok(out.map(|out| {
                        let sent = Sent {
                            key: batch.key(i),
                            value: batch.value(i),
                            members: &members,
                        };
                        from_plugin(&out, &sent, original)
                    })),
                    Err(message) => Err(plugin_error(&sluice_wasm::WasmError::Contract {
                        plugin: self.inner.plugin().name().to_owned(),
                        message: format!("`apply` result {i}: {message}"),
                    })),
                })
                .collect(),
            // A data error names no record: try them one by one so only the bad ones fail.
            Err(e) if e.kind() == ErrorKind::Data && records.len() > 1 => {
                records.into_iter().map(|r| self.apply(r)).collect()
            }
            Err(e) => records.iter().map(|_| Err(plugin_error(&e))).collect(),
        }
    }
}

/// Where the top-level members of a key and a value that are structs with a schema sit in the
/// bytes sent, so that members a plugin leaves as they were need not be read back.
#[derive(Default)]
struct Members {
    key: Option<Vec<Range<usize>>>,
    value: Option<Vec<Range<usize>>>,
}

/// What was sent for one record: its key and value bytes and their members.
struct Sent<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    members: &'a Members,
}

/// Appends a key or value as sent to `out` (nothing for null: returns `false`), with its
/// members' positions when it is a struct with a schema.
fn encode(
    schema: Option<&SchemaRef>,
    value: &Value,
    out: &mut Vec<u8>,
    members: &mut Option<Vec<Range<usize>>>,
) -> bool {
    match (schema, value) {
        (Some(schema), Value::Struct(s)) if schema.kind == SchemaType::Struct => {
            *members = Some(super::wasm_fit::encode_struct(s, out));
            true
        }
        _ => sluice_wasm::encode_value(value, out),
    }
}

/// Packs a record into the batch; returns its members' positions.
fn pack(record: &TransformRecord, batch: &mut Batch) -> Members {
    let mut members = Members::default();
    batch.push(
        Meta {
            topic: &record.topic,
            partition: record.partition,
            offset: record.kafka_offset,
            headers: &record.headers,
            timestamp: record.timestamp,
        },
        |out| {
            encode(
                record.key_schema.as_ref(),
                &record.key,
                out,
                &mut members.key,
            )
        },
        |out| {
            encode(
                record.value_schema.as_ref(),
                &record.value,
                out,
                &mut members.value,
            )
        },
    );
    members
}

/// The plugin's output as a record; unchanged keys and values keep their value and schema.
fn from_plugin(
    out: &RecordView<'_>,
    sent: &Sent<'_>,
    original: TransformRecord,
) -> TransformRecord {
    let (key_schema, key) = changed(
        original.key_schema,
        original.key,
        sent.key,
        sent.members.key.as_deref(),
        out.key,
    );
    let (value_schema, value) = changed(
        original.value_schema,
        original.value,
        sent.value,
        sent.members.value.as_deref(),
        out.value,
    );
    TransformRecord {
        topic: if out.topic == original.topic {
            original.topic
        } else {
            out.topic.to_owned()
        },
        partition: out.partition,
        key_schema,
        key,
        value_schema,
        value,
        headers: out.headers(),
        timestamp: out.timestamp,
        kafka_offset: original.kafka_offset,
    }
}

/// A key or value after the plugin: the original when the plugin returned the bytes it was
/// sent; a struct whose members were partly kept reuses the kept members' values (see
/// [`super::wasm_fit::fit_changed`]); anything else is read back with [`fitted`].
fn changed(
    schema: Option<SchemaRef>,
    original: Value,
    sent: Option<&[u8]>,
    members: Option<&[Range<usize>]>,
    out: Option<&[u8]>,
) -> (Option<SchemaRef>, Value) {
    if out == sent {
        return (schema, original);
    }
    if let (Some(schema), Value::Struct(original), Some(sent), Some(members), Some(out)) =
        (&schema, original, sent, members, out)
        && let Some(value) = super::wasm_fit::fit_changed(schema, original, sent, members, out)
    {
        return (Some(schema.clone()), value);
    }
    fitted(schema, out)
}

/// A changed key or value, with the original schema when it still fits (read straight into a
/// value of that schema, see [`super::wasm_fit`]); otherwise as schemaless JSON.
fn fitted(schema: Option<SchemaRef>, bytes: Option<&[u8]>) -> (Option<SchemaRef>, Value) {
    let Some(bytes) = bytes else {
        return match schema {
            Some(schema) if schema.optional || schema.default.is_some() => {
                (Some(schema), Value::Null)
            }
            _ => (None, Value::Null),
        };
    };
    if let Some(schema) = schema
        && let Some(value) = super::wasm_fit::fit(&schema, bytes)
    {
        return (Some(schema), value);
    }
    (None, sluice_wasm::decode_value(Some(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_connector_api::{Decimal, Schema};

    fn schema() -> SchemaRef {
        Arc::new(
            Schema::struct_builder()
                .field("seq", Schema::int64())
                .field("name", Schema::string().optional())
                .field("amount", Schema::decimal(2))
                .field("created", Schema::timestamp())
                .build(),
        )
    }

    #[test]
    fn a_compatible_result_keeps_the_schema() {
        let out = json!({"seq": 7, "name": "***", "amount": "12.34", "created": 1000});
        let (s, v) = fitted(Some(schema()), Some(out.to_string().as_bytes()));
        assert!(s.is_some());
        let v = v.as_struct().unwrap().clone();
        assert_eq!(v.get("name"), Some(&Value::from("***")));
        assert_eq!(
            v.get("amount"),
            Some(&Value::Decimal(Decimal::parse("12.34").unwrap()))
        );
        assert_eq!(v.get("created"), Some(&Value::Timestamp(1000)));
    }

    #[test]
    fn an_incompatible_result_is_schemaless() {
        let out = json!({"seq": 7, "extra": true, "amount": "1.00", "created": 1});
        let (s, v) = fitted(Some(schema()), Some(out.to_string().as_bytes()));
        assert!(s.is_none());
        assert!(matches!(v, Value::Map(_)));
    }
}
