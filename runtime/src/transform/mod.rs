//! Single message transforms (SMTs) and predicates, with Kafka Connect's semantics and names.
//!
//! A connector's `transforms:` list (or Kafka Connect's flat `transforms=a,b`,
//! `transforms.a.type=...`) becomes a [`Chain`]: each step is a [`Transform`], optionally guarded
//! by a named [`Predicate`] (and `negate`). [`chain_from_pipeline`] and [`chain_from_flat`]
//! validate either form and report every problem as a [`FieldError`] whose path names the
//! transform, e.g. `transforms.route.regex: invalid regex ...`.
//!
//! Transforms operate on a [`TransformRecord`], which is neither a source nor a sink record: the
//! task loops keep the source partition/offset (or the consumed topic-partition-offset) beside it.
//!
//! ```
//! use serde_json::json;
//! use sluice::transform::{TransformRecord, chain_from_pipeline};
//! use sluice_connector_api::Value;
//!
//! let config = json!({
//!     "transforms": [{"name": "route", "type": "RegexRouter", "regex": "(.*)", "replacement": "copy-$1"}],
//! });
//! let chain = chain_from_pipeline(config.as_object().unwrap()).unwrap();
//! let record = TransformRecord::new("orders", None, Value::from("x"));
//! let out = chain.apply(record).unwrap().unwrap();
//! assert_eq!(out.topic, "copy-orders");
//! ```
//!
//! [`FieldError`]: sluice_connector_api::FieldError

mod cache;
mod cast;
mod chain;
mod config;
mod debezium;
mod error;
mod field;
mod flatten;
mod headers;
mod insert;
mod mask;
mod part;
mod predicate;
mod props;
mod record;
mod replace;
mod route;
mod timestamp;
mod wasm;
pub(crate) use wasm::WASM_TYPE;
mod wasm_fit;

#[cfg(test)]
mod testing;

pub use chain::{Chain, Predicate, Transform};
pub use config::{
    chain_from_flat, chain_from_pipeline, predicate_classes, predicate_names, transform_classes,
    transform_names,
};
pub use error::TransformError;
pub use record::TransformRecord;
