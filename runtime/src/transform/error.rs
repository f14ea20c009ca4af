//! Why a transform could not handle a record.

use sluice_connector_api::ErrorKind;

/// A transform failed on one record. Every message names the transform (by its Kafka Connect
/// name) and what it expected, e.g. "Cast: field `amount` is a struct; expected a primitive".
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A value (or field) had the wrong type.
    #[error("{transform}: {what} is {found}; expected {expected}")]
    WrongType {
        transform: &'static str,
        /// What was looked at: "the value", "the key", "field `amount`".
        what: String,
        found: String,
        expected: String,
    },
    /// A configured field is not in the record's schema (or map).
    #[error("{transform}: field `{field}` is not in the {part}{schema}")]
    MissingField {
        transform: &'static str,
        field: String,
        part: &'static str,
        /// " schema" or "" (a schemaless map).
        schema: &'static str,
    },
    /// The transform only works on records with a schema.
    #[error("{transform}: the {part} has no schema; {purpose} needs one")]
    SchemaRequired {
        transform: &'static str,
        part: &'static str,
        purpose: &'static str,
    },
    /// A value could not be converted.
    #[error("{transform}: cannot convert {what} {value:?} to {target}: {reason}")]
    Convert {
        transform: &'static str,
        what: String,
        value: String,
        target: String,
        reason: String,
    },
    /// Anything else about the record that the transform cannot work with.
    #[error("{transform}: {message}")]
    Record {
        transform: &'static str,
        message: String,
    },
    /// A WebAssembly transform plugin failed: it returned an error, trapped, or hit a limit.
    #[error("{message}")]
    Plugin { kind: ErrorKind, message: String },
    /// A step of a chain failed; names the step as configured.
    #[error("transform `{step}` failed: {source}")]
    Step {
        step: String,
        #[source]
        source: Box<TransformError>,
    },
}

impl TransformError {
    /// Transforms fail on the data of one record: other records may still pass, so this is a
    /// data error (dead-letter queue or task failure, as the runtime's policy says). A plugin
    /// that trapped, hit a limit or failed fatally is fatal: the task fails whatever the policy.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Plugin { kind, .. } => *kind,
            Self::Step { source, .. } => source.kind(),
            _ => ErrorKind::Data,
        }
    }

    pub(crate) fn record(transform: &'static str, message: impl Into<String>) -> Self {
        Self::Record {
            transform,
            message: message.into(),
        }
    }

    /// The error a step reported, without the step wrapper.
    pub fn root(&self) -> &Self {
        match self {
            Self::Step { source, .. } => source.root(),
            other => other,
        }
    }
}
