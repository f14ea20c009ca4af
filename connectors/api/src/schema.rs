//! Kafka Connect's schema model: types, optional flag, name/version/doc/parameters, and the
//! logical types Decimal, Date, Time and Timestamp, identified by name as Kafka Connect does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::value::Value;

/// Schemas are shared by every record that uses them.
pub type SchemaRef = Arc<Schema>;

/// Names and parameters of Kafka Connect's logical types.
pub mod logical {
    pub const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
    pub const DECIMAL_SCALE: &str = "scale";
    pub const DATE: &str = "org.apache.kafka.connect.data.Date";
    pub const TIME: &str = "org.apache.kafka.connect.data.Time";
    pub const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
}

/// The physical type of a schema, with Kafka Connect's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaType {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Array,
    Map,
    Struct,
}

impl SchemaType {
    /// The name Kafka Connect uses in JSON schemas (`int32`, `struct`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Int16 => "int16",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Float32 => "float",
            Self::Float64 => "double",
            Self::Boolean => "boolean",
            Self::String => "string",
            Self::Bytes => "bytes",
            Self::Array => "array",
            Self::Map => "map",
            Self::Struct => "struct",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "float" => Self::Float32,
            "double" => Self::Float64,
            "boolean" => Self::Boolean,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            "array" => Self::Array,
            "map" => Self::Map,
            "struct" => Self::Struct,
            _ => return None,
        })
    }
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One field of a struct schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub index: usize,
    pub schema: SchemaRef,
}

/// A Kafka Connect schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub kind: SchemaType,
    pub optional: bool,
    pub default: Option<Value>,
    pub name: Option<String>,
    pub version: Option<i32>,
    pub doc: Option<String>,
    pub parameters: BTreeMap<String, String>,
    /// Fields of a struct, in order.
    pub fields: Vec<Field>,
    /// Key schema of a map.
    pub key_schema: Option<SchemaRef>,
    /// Value schema of a map, element schema of an array.
    pub value_schema: Option<SchemaRef>,
}

/// Why a value does not match a schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    pub path: String,
    pub message: String,
}

impl Schema {
    pub fn of(kind: SchemaType) -> Self {
        Self {
            kind,
            optional: false,
            default: None,
            name: None,
            version: None,
            doc: None,
            parameters: BTreeMap::new(),
            fields: Vec::new(),
            key_schema: None,
            value_schema: None,
        }
    }

    pub fn int8() -> Self {
        Self::of(SchemaType::Int8)
    }
    pub fn int16() -> Self {
        Self::of(SchemaType::Int16)
    }
    pub fn int32() -> Self {
        Self::of(SchemaType::Int32)
    }
    pub fn int64() -> Self {
        Self::of(SchemaType::Int64)
    }
    pub fn float32() -> Self {
        Self::of(SchemaType::Float32)
    }
    pub fn float64() -> Self {
        Self::of(SchemaType::Float64)
    }
    pub fn boolean() -> Self {
        Self::of(SchemaType::Boolean)
    }
    pub fn string() -> Self {
        Self::of(SchemaType::String)
    }
    pub fn bytes() -> Self {
        Self::of(SchemaType::Bytes)
    }

    pub fn array(items: Schema) -> Self {
        Self {
            value_schema: Some(Arc::new(items)),
            ..Self::of(SchemaType::Array)
        }
    }

    pub fn map(keys: Schema, values: Schema) -> Self {
        Self {
            key_schema: Some(Arc::new(keys)),
            value_schema: Some(Arc::new(values)),
            ..Self::of(SchemaType::Map)
        }
    }

    pub fn struct_builder() -> SchemaBuilder {
        SchemaBuilder {
            schema: Self::of(SchemaType::Struct),
        }
    }

    /// Kafka Connect's `Decimal` logical type: bytes holding the unscaled value.
    pub fn decimal(scale: i32) -> Self {
        let mut schema = Self::bytes().named(logical::DECIMAL).versioned(1);
        schema
            .parameters
            .insert(logical::DECIMAL_SCALE.to_owned(), scale.to_string());
        schema
    }

    /// Kafka Connect's `Date` logical type: days since the Unix epoch as int32.
    pub fn date() -> Self {
        Self::int32().named(logical::DATE).versioned(1)
    }

    /// Kafka Connect's `Time` logical type: milliseconds since midnight as int32.
    pub fn time() -> Self {
        Self::int32().named(logical::TIME).versioned(1)
    }

    /// Kafka Connect's `Timestamp` logical type: milliseconds since the Unix epoch as int64.
    pub fn timestamp() -> Self {
        Self::int64().named(logical::TIMESTAMP).versioned(1)
    }

    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn versioned(mut self, version: i32) -> Self {
        self.version = Some(version);
        self
    }

    pub fn with_doc(mut self, doc: impl Into<String>) -> Self {
        self.doc = Some(doc.into());
        self
    }

    pub fn with_default(mut self, default: Value) -> Self {
        self.default = Some(default);
        self
    }

    pub fn with_parameter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.insert(key.into(), value.into());
        self
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The scale of a Decimal schema, if this is one.
    pub fn decimal_scale(&self) -> Option<i32> {
        if self.name.as_deref() != Some(logical::DECIMAL) {
            return None;
        }
        self.parameters.get(logical::DECIMAL_SCALE)?.parse().ok()
    }

    pub fn is_logical(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }

    /// Checks that `value` has the shape this schema describes, naming the first offending path.
    pub fn validate_value(&self, value: &Value) -> Result<(), SchemaError> {
        self.validate_at("$", value)
    }

    fn validate_at(&self, path: &str, value: &Value) -> Result<(), SchemaError> {
        let fail = |message: String| {
            Err(SchemaError {
                path: path.to_owned(),
                message,
            })
        };
        if value.is_null() {
            if self.optional || self.default.is_some() {
                return Ok(());
            }
            return fail(format!("null for a required {} field", self.kind));
        }
        let ok = match (self.kind, value) {
            (SchemaType::Int8, Value::Int8(_))
            | (SchemaType::Int16, Value::Int16(_))
            | (SchemaType::Int32, Value::Int32(_))
            | (SchemaType::Int64, Value::Int64(_))
            | (SchemaType::Float32, Value::Float32(_))
            | (SchemaType::Float64, Value::Float64(_))
            | (SchemaType::Boolean, Value::Boolean(_))
            | (SchemaType::String, Value::String(_))
            | (SchemaType::Bytes, Value::Bytes(_)) => true,
            (SchemaType::Bytes, Value::Decimal(_)) => self.is_logical(logical::DECIMAL),
            (SchemaType::Int32, Value::Date(_)) => self.is_logical(logical::DATE),
            (SchemaType::Int32, Value::Time(_)) => self.is_logical(logical::TIME),
            (SchemaType::Int64, Value::Timestamp(_)) => self.is_logical(logical::TIMESTAMP),
            (SchemaType::Array, Value::Array(items)) => {
                if let Some(item_schema) = &self.value_schema {
                    for (i, item) in items.iter().enumerate() {
                        item_schema.validate_at(&format!("{path}[{i}]"), item)?;
                    }
                }
                true
            }
            (SchemaType::Map, Value::Map(entries)) => {
                for (k, v) in entries {
                    if let Some(ks) = &self.key_schema {
                        ks.validate_at(&format!("{path}.<key>"), k)?;
                    }
                    if let Some(vs) = &self.value_schema {
                        vs.validate_at(&format!("{path}[{k}]"), v)?;
                    }
                }
                true
            }
            (SchemaType::Struct, Value::Struct(s)) => {
                for field in &self.fields {
                    let v = s.get(&field.name).unwrap_or(&Value::Null);
                    field
                        .schema
                        .validate_at(&format!("{path}.{}", field.name), v)?;
                }
                if let Some((name, _)) = s.iter().find(|(name, _)| self.field(name).is_none()) {
                    return fail(format!("field `{name}` is not in the schema"));
                }
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            fail(format!(
                "expected {}, got {}",
                self.describe(),
                value.type_name()
            ))
        }
    }

    /// A short human description: `int64`, `Decimal(scale 2)`, `struct shop.Order`.
    pub fn describe(&self) -> String {
        match (self.name.as_deref(), self.decimal_scale()) {
            (Some(logical::DECIMAL), Some(scale)) => format!("Decimal(scale {scale})"),
            (Some(logical::DATE), _) => "Date".to_owned(),
            (Some(logical::TIME), _) => "Time".to_owned(),
            (Some(logical::TIMESTAMP), _) => "Timestamp".to_owned(),
            (Some(name), _) => format!("{} {name}", self.kind),
            (None, _) => self.kind.to_string(),
        }
    }
}

/// Builds a struct schema field by field.
#[derive(Debug, Clone)]
pub struct SchemaBuilder {
    schema: Schema,
}

impl SchemaBuilder {
    pub fn field(self, name: impl Into<String>, schema: Schema) -> Self {
        self.field_ref(name, Arc::new(schema))
    }

    pub fn field_ref(mut self, name: impl Into<String>, schema: SchemaRef) -> Self {
        let index = self.schema.fields.len();
        self.schema.fields.push(Field {
            name: name.into(),
            index,
            schema,
        });
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.schema.name = Some(name.into());
        self
    }

    pub fn version(mut self, version: i32) -> Self {
        self.schema.version = Some(version);
        self
    }

    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        self.schema.doc = Some(doc.into());
        self
    }

    pub fn optional(mut self) -> Self {
        self.schema.optional = true;
        self
    }

    pub fn build(self) -> Schema {
        self.schema
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Decimal, Struct};

    #[test]
    fn validate_names_the_offending_field() {
        let schema = Schema::struct_builder()
            .field("id", Schema::int64())
            .field("price", Schema::decimal(2))
            .build();
        let good = Value::Struct(
            Struct::new()
                .with("id", 1i64)
                .with("price", Decimal::new(12345i64.into(), 2)),
        );
        assert!(schema.validate_value(&good).is_ok());
        let bad = Value::Struct(Struct::new().with("id", "x").with("price", Value::Null));
        let err = schema.validate_value(&bad).unwrap_err();
        assert_eq!(err.path, "$.id");
        assert_eq!(err.message, "expected int64, got string");
        let missing = Value::Struct(Struct::new().with("id", 1i64));
        let err = schema.validate_value(&missing).unwrap_err();
        assert_eq!(err.path, "$.price");
    }

    #[test]
    fn logical_types_carry_kafka_connect_names() {
        assert_eq!(Schema::decimal(3).decimal_scale(), Some(3));
        assert_eq!(Schema::timestamp().describe(), "Timestamp");
        assert_eq!(Schema::date().kind, SchemaType::Int32);
        assert_eq!(SchemaType::from_name("double"), Some(SchemaType::Float64));
    }
}
