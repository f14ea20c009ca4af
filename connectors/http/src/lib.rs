//! `http-sink`: records to an HTTP endpoint.
//!
//! [`HttpSinkPlugin`] sends each record's value to a URL (`${topic}`, `${partition}` and
//! `${key}` filled in per record) with POST, PUT or PATCH: one record per request, or batched as
//! a JSON array or NDJSON up to `batch_max_records`/`batch_max_bytes`, waiting `linger` for a
//! batch to fill. Up to `max_in_flight` requests run at once per task, spread by key so records
//! with the same key arrive in order. 408, 429, 5xx, timeouts and connection errors are retried
//! with exponential backoff (honouring `Retry-After`), by default until the task stops; records
//! the server rejects (other 4xx) are reported one by one to the runtime's dead-letter path.
//! Kafka offsets are committed only up to records the server accepted or the DLQ took: a crash
//! re-delivers, never loses.
//!
//! ```yaml
//! name: orders-webhook
//! connector: http-sink
//! config:
//!   topics: [orders]
//!   url: https://api.example.com/orders/${key}
//!   method: put
//!   auth_type: bearer
//!   auth_token: ${env:ORDERS_API_TOKEN}
//! errors: { tolerance: all, dlq_topic: orders-webhook-dlq }
//! value_converter: { type: json, schemas: false }
//! ```

mod body;
mod config;
mod error;
mod retry;
mod sink;
mod template;

use sluice_connector_api::Registry;

pub use config::{AuthType, BatchFormat, HttpSinkConfig, Method};
pub use error::{Error, Result};
pub use sink::HttpSinkPlugin;

/// Registers `http-sink`.
pub fn register(registry: &mut Registry) {
    registry.add_sink(HttpSinkPlugin);
}
