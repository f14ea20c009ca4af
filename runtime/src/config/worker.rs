//! The worker file: how to reach Kafka, where offsets go, default converters.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_connector_api::{ConfigSpec, FieldError, FieldKind, Validator};

use crate::convert::ConverterConfig;

const DEFAULT_OFFSETS_FILE: &str = "./data/offsets.json";
const DEFAULT_OFFSET_FLUSH_INTERVAL_MS: u64 = 5_000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 30_000;
const DEFAULT_MAX_IN_FLIGHT: i64 = 10_000;
const DEFAULT_SINK_BATCH: i64 = 1_000;

/// A worker's configuration (`configs/worker.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct WorkerConfig {
    /// Kafka bootstrap servers, `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Standalone mode: where source offsets are kept.
    pub offsets_file: PathBuf,
    /// How often source offsets are written and sink offsets committed (milliseconds).
    pub offset_flush_interval: u64,
    /// How long a stop may take to flush and commit before tasks are abandoned (milliseconds).
    pub shutdown_timeout: u64,
    /// Most records a source task has sent but not yet had acknowledged.
    pub max_in_flight_records: usize,
    /// Most records handed to a sink task in one `put`.
    pub sink_batch_size: usize,
    /// Default key converter.
    pub key_converter: ConverterConfig,
    /// Default value converter.
    pub value_converter: ConverterConfig,
    /// librdkafka settings passed through to every client, e.g. `security.protocol`.
    pub kafka: BTreeMap<String, Json>,
    /// librdkafka settings for source producers only, e.g. `compression.type: lz4`.
    pub producer: BTreeMap<String, Json>,
    /// librdkafka settings for sink consumers only, e.g. `fetch.min.bytes`.
    pub consumer: BTreeMap<String, Json>,
}

/// Spec of a `key_converter`/`value_converter` block.
pub fn converter_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("type", FieldKind::String, "Converter: json, string or bytes.")
        .check(Validator::one_of(["json", "string", "bytes"]))
        .optional("schemas", FieldKind::Bool, true, "json: write and expect Kafka Connect's {schema, payload} envelope.")
        .optional(
            "decimal_format",
            FieldKind::String,
            "base64",
            "json: Decimal payloads as base64 of the unscaled bytes (Kafka Connect's default) or as numbers.",
        )
        .check(Validator::one_of(["base64", "numeric"]))
}

pub fn worker_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required(
            "bootstrap_servers",
            FieldKind::String,
            "Kafka bootstrap servers, host:port[,host:port...].",
        )
        .check(Validator::NonEmpty)
        .optional(
            "offsets_file",
            FieldKind::String,
            DEFAULT_OFFSETS_FILE,
            "Standalone mode: where source offsets are kept.",
        )
        .optional(
            "offset_flush_interval",
            FieldKind::Duration,
            DEFAULT_OFFSET_FLUSH_INTERVAL_MS,
            "How often source offsets are written and sink offsets committed.",
        )
        .check(Validator::min(1))
        .optional(
            "shutdown_timeout",
            FieldKind::Duration,
            DEFAULT_SHUTDOWN_TIMEOUT_MS,
            "How long a stop may take to flush and commit.",
        )
        .optional(
            "max_in_flight_records",
            FieldKind::Int,
            DEFAULT_MAX_IN_FLIGHT,
            "Most records a source task has sent but not had acknowledged.",
        )
        .check(Validator::range(1, 10_000_000))
        .optional(
            "sink_batch_size",
            FieldKind::Int,
            DEFAULT_SINK_BATCH,
            "Most records handed to a sink task in one put.",
        )
        .check(Validator::range(1, 1_000_000))
        .optional(
            "key_converter",
            FieldKind::Object(converter_spec()),
            json!({"type": "string"}),
            "Default key converter.",
        )
        .optional(
            "value_converter",
            FieldKind::Object(converter_spec()),
            json!({"type": "json", "schemas": true}),
            "Default value converter.",
        )
        .optional(
            "kafka",
            FieldKind::Map,
            json!({}),
            "librdkafka settings passed through to every client.",
        )
        .optional(
            "producer",
            FieldKind::Map,
            json!({}),
            "librdkafka settings for source producers only.",
        )
        .optional(
            "consumer",
            FieldKind::Map,
            json!({}),
            "librdkafka settings for sink consumers only.",
        )
}

pub(crate) fn validate_worker(value: &Map<String, Json>) -> Result<WorkerConfig, Vec<FieldError>> {
    let config = worker_spec().validate(value)?;
    let mut errors = Vec::new();
    for block in ["kafka", "producer", "consumer"] {
        if let Some(Json::Object(settings)) = config.get(block) {
            for (k, v) in settings {
                if v.is_object() || v.is_array() || v.is_null() {
                    errors.push(FieldError::new(
                        format!("{block}.{k}"),
                        "expected a single librdkafka value (string, number or boolean)",
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    config
        .parse()
        .map_err(|e| vec![FieldError::new("", e.to_string())])
}

impl WorkerConfig {
    /// librdkafka passthrough settings as strings: the common ones, then `specific` on top.
    pub(crate) fn client_settings<'a>(
        &'a self,
        specific: &'a BTreeMap<String, Json>,
    ) -> impl Iterator<Item = (&'a str, String)> {
        self.kafka.iter().chain(specific).map(|(k, v)| {
            let text = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.as_str(), text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_mistakes_are_named() {
        let ok = validate_worker(json!({"bootstrap_servers": "h:1"}).as_object().unwrap()).unwrap();
        assert_eq!(ok.offset_flush_interval, DEFAULT_OFFSET_FLUSH_INTERVAL_MS);
        assert_eq!(ok.value_converter.kind, crate::convert::ConverterKind::Json);
        let bad = json!({"bootstrap_servers": "h:1", "value_converter": {"type": "avro"}, "kafka": {"x": [1]}});
        let errors = validate_worker(bad.as_object().unwrap()).unwrap_err();
        assert_eq!(errors[0].field, "value_converter.type");
        assert!(
            errors[0]
                .message
                .contains("expected one of json, string, bytes")
        );
    }
}
