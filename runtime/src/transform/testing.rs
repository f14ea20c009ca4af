//! Test helpers: records, schemaless maps and one-step chains from JSON configs.

use serde_json::{Value as Json, json};
use sluice_connector_api::{FieldError, SchemaRef, Value};

use super::{Chain, TransformError, TransformRecord, chain_from_pipeline};

/// A schemaless map with string keys.
pub(crate) fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (Value::from(*k), v.clone()))
            .collect(),
    )
}

/// A record on topic `orders` with this value.
pub(crate) fn record(schema: Option<SchemaRef>, value: Value) -> TransformRecord {
    TransformRecord::new("orders", schema, value)
}

/// A chain of one transform named `t` with these properties (`type` included).
pub(crate) fn chain(step: Json) -> Chain {
    let mut step = step;
    step["name"] = json!("t");
    let config = json!({ "transforms": [step] });
    match chain_from_pipeline(config.as_object().unwrap()) {
        Ok(chain) => chain,
        Err(errors) => panic!("{errors:?}"),
    }
}

/// The configuration errors of one transform named `t`, as `field: message` lines.
pub(crate) fn config_errors(step: Json) -> Vec<FieldError> {
    let mut step = step;
    step["name"] = json!("t");
    let config = json!({ "transforms": [step] });
    chain_from_pipeline(config.as_object().unwrap()).unwrap_err()
}

/// Applies and expects a record out.
pub(crate) fn apply(chain: &Chain, record: TransformRecord) -> TransformRecord {
    chain
        .apply(record)
        .expect("the transform succeeds")
        .expect("the record is kept")
}

/// Applies and expects an error; returns the step's own error message.
pub(crate) fn apply_err(chain: &Chain, record: TransformRecord) -> String {
    match chain.apply(record) {
        Err(TransformError::Step { source, .. }) => source.to_string(),
        other => panic!("expected a step error, got {other:?}"),
    }
}
