//! Converters between connector values and Kafka bytes: `json` (Kafka Connect's JsonConverter,
//! schemas on or off), `string` and `bytes`.

mod bytes;
mod json;
mod string;

use std::sync::Arc;

use serde::Deserialize;
use sluice_connector_api::{Schema, SchemaRef, Value};

pub use bytes::BytesConverter;
pub use json::{DecimalFormat, JsonConverter};
pub use string::StringConverter;

/// Why a value could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Invalid(String),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl ConvertError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

/// Turns values into bytes and back.
pub trait Converter: Send + Sync {
    /// Serializes a value; `None` is a null payload (a tombstone for values).
    fn encode(
        &self,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Vec<u8>>, ConvertError>;

    /// Deserializes bytes into a value and, when the format carries one, its schema.
    fn decode(&self, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value), ConvertError>;

    /// [`encode`](Self::encode) for a schema shared by many records; converters that write the
    /// schema (JSON with schemas) cache its serialized form per shared schema.
    fn encode_shared(
        &self,
        schema: Option<&SchemaRef>,
        value: &Value,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        self.encode(schema.map(|s| &**s), value)
    }
}

/// Which converter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConverterKind {
    Json,
    String,
    Bytes,
}

/// A `key_converter`/`value_converter` block.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ConverterConfig {
    /// json, string or bytes.
    #[serde(rename = "type")]
    pub kind: ConverterKind,
    /// json: the `{schema, payload}` envelope.
    #[serde(default = "yes")]
    pub schemas: bool,
    /// json: how Decimal payloads are written.
    #[serde(default)]
    pub decimal_format: DecimalFormat,
}

fn yes() -> bool {
    true
}

impl ConverterConfig {
    pub fn build(&self) -> Arc<dyn Converter> {
        match self.kind {
            ConverterKind::Json => Arc::new(JsonConverter::new(self.schemas, self.decimal_format)),
            ConverterKind::String => Arc::new(StringConverter),
            ConverterKind::Bytes => Arc::new(BytesConverter),
        }
    }
}
