//! The contract between the Sluice runtime and its connectors.
//!
//! This crate follows Kafka Connect's data model so that Sluice's topics interoperate with the
//! existing ecosystem:
//!
//! - [`Schema`] and [`Value`] describe data (primitives, arrays, maps, structs and the logical types
//!   Decimal, Date, Time and Timestamp);
//! - [`SourceRecord`] and [`SinkRecord`] carry it across the runtime, with headers, timestamps and
//!   the source partition/offset maps a source task resumes from;
//! - [`SourceConnector`]/[`SourceTask`] and [`SinkConnector`]/[`SinkTask`] are the object-safe async
//!   traits connectors implement;
//! - [`ConfigSpec`] declares a connector's typed configuration and validates a whole config at once,
//!   naming every bad field;
//! - [`Registry`] is where each connector crate registers its types (`register(&mut registry)`).
//!
//! ```
//! use sluice_connector_api::{Schema, Struct, Value};
//!
//! let schema = Schema::struct_builder()
//!     .field("id", Schema::int64())
//!     .field("name", Schema::string().optional())
//!     .build();
//! let value = Value::Struct(Struct::new().with("id", 7i64).with("name", Value::Null));
//! assert!(schema.validate_value(&value).is_ok());
//! ```

mod error;
mod record;
mod registry;
mod schema;
mod secret;
mod sink;
mod source;
mod spec;
mod value;

pub use error::{ConnectorError, ErrorKind, Result};
pub use record::{Header, SinkRecord, SourceOffset, SourcePartition, SourceRecord, TopicPartition};
pub use registry::{ConnectorKind, Plugin, PluginResolver, Registry, SinkPlugin, SourcePlugin};
pub use schema::{Field, Schema, SchemaBuilder, SchemaError, SchemaRef, SchemaType, logical};
pub use secret::Secret;
pub use sink::{
    CommitRequest, ErrantRecordReporter, RewindRequest, SinkConnector, SinkTask, SinkTaskContext,
};
pub use source::{OffsetReader, SourceConnector, SourceTask, SourceTaskContext};
pub use spec::{
    ConfigField, ConfigSpec, ConnectorConfig, FieldError, FieldKind, MASK, Validator, mask_entries,
    sensitive_key,
};
pub use value::{Decimal, DecimalError, FieldName, Struct, Value};
