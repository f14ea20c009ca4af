//! Kafka Connect's `JsonConverter`, byte for byte.
//!
//! With schemas on, every message is `{"schema":<schema>,"payload":<payload>}` with the schema in
//! Kafka Connect's JSON form, keys in the order Kafka Connect writes them (`type`, `items`/`keys`/
//! `values`/`fields`, then `optional`, `name`, `version`, `doc`, `parameters`, `default`; a struct
//! field's own name comes last as `field`), no whitespace, and strings escaped as Jackson does.
//! Logical types follow Kafka Connect: Decimal as base64 of the unscaled two's-complement bytes
//! (or a plain number with `decimal_format: numeric`), Date as int32 days, Time as int32
//! milliseconds, Timestamp as int64 milliseconds. Known difference: doubles of 1e7 and above are
//! written as `10000000.0` where Java writes `1.0E7`; both read back as the same number.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value as Json;
use sluice_connector_api::{Decimal, Schema, SchemaRef, SchemaType, Struct, Value, logical};

use super::{ConvertError, Converter};

/// Where in a value a problem is; rendered only when an error is reported, so the hot path
/// builds no path strings.
#[derive(Clone, Copy)]
enum Loc<'a> {
    Root(&'a str),
    Field(&'a Loc<'a>, &'a str),
    Index(&'a Loc<'a>, usize),
}

impl std::fmt::Display for Loc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Root(name) => f.write_str(name),
            Self::Field(parent, name) => {
                let parent = parent.to_string();
                if parent.is_empty() {
                    f.write_str(name)
                } else {
                    write!(f, "{parent}.{name}")
                }
            }
            Self::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

const ENVELOPE_ERROR: &str = "JsonConverter with schemas enabled requires \"schema\" and \"payload\" fields and may not \
     contain additional fields; to read plain JSON set `schemas: false` on the converter";

/// How Decimal payloads are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecimalFormat {
    /// Base64 of the unscaled value's bytes (Kafka Connect's default).
    #[default]
    Base64,
    /// A JSON number with the exact digits.
    Numeric,
}

/// How many serialized schemas a converter keeps (one per table or record type in practice).
const SCHEMA_CACHE: usize = 256;

/// Kafka Connect's JSON converter.
#[derive(Debug)]
pub struct JsonConverter {
    schemas: bool,
    decimal_format: DecimalFormat,
    /// Serialized schemas by shared schema identity. Holding the `Arc` keeps its address from
    /// being reused by another schema while cached.
    cache: Mutex<Vec<(SchemaRef, Arc<str>)>>,
    /// Schemas read from envelopes, by their JSON text: a topic's records repeat the same schema
    /// (a CDC event carries ~2 KB of it), so each is parsed once and shared.
    read: Mutex<Vec<(Box<str>, SchemaRef)>>,
}

/// `{"schema": ..., "payload": ...}`, both kept as raw JSON text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    schema: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

impl JsonConverter {
    pub fn new(schemas: bool, decimal_format: DecimalFormat) -> Self {
        Self {
            schemas,
            decimal_format,
            cache: Mutex::new(Vec::new()),
            read: Mutex::new(Vec::new()),
        }
    }

    /// The schema whose JSON text is `text`, parsed once per distinct text.
    fn read_schema_text(&self, text: &str) -> Result<SchemaRef, ConvertError> {
        {
            let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, schema)) = read
                .iter()
                .find(|(t, _)| t.len() == text.len() && **t == *text)
            {
                return Ok(schema.clone());
            }
        }
        let json: Json = serde_json::from_str(text)?;
        let schema = Arc::new(read_schema(&json, "schema")?);
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if read.len() >= SCHEMA_CACHE {
            read.remove(0);
        }
        read.push((text.into(), schema.clone()));
        Ok(schema)
    }

    fn schema_text(&self, schema: &SchemaRef) -> Result<Arc<str>, ConvertError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, text)) = cache.iter().find(|(s, _)| Arc::ptr_eq(s, schema)) {
            return Ok(text.clone());
        }
        let mut out = String::new();
        write_schema(&mut out, schema)?;
        let text: Arc<str> = out.into();
        if cache.len() >= SCHEMA_CACHE {
            cache.remove(0);
        }
        cache.push((schema.clone(), text.clone()));
        Ok(text)
    }
}

impl Converter for JsonConverter {
    fn encode(
        &self,
        schema: Option<&Schema>,
        value: &Value,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        if schema.is_none() && value.is_null() {
            return Ok(None);
        }
        let mut out = String::with_capacity(256);
        if self.schemas {
            out.push_str("{\"schema\":");
            match schema {
                Some(schema) => write_schema(&mut out, schema)?,
                None => out.push_str("null"),
            }
            out.push_str(",\"payload\":");
            write_value(&mut out, schema, value, self.decimal_format, &Loc::Root(""))?;
            out.push('}');
        } else {
            write_value(&mut out, schema, value, self.decimal_format, &Loc::Root(""))?;
        }
        Ok(Some(out.into_bytes()))
    }

    fn encode_shared(
        &self,
        schema: Option<&SchemaRef>,
        value: &Value,
    ) -> Result<Option<Vec<u8>>, ConvertError> {
        let Some(schema) = schema.filter(|_| self.schemas) else {
            return self.encode(schema.map(|s| &**s), value);
        };
        let schema_text = self.schema_text(schema)?;
        // Room for a typical payload too, so the buffer is not regrown (and copied) per record.
        let mut out = String::with_capacity(schema_text.len() + 1024);
        out.push_str("{\"schema\":");
        out.push_str(&schema_text);
        out.push_str(",\"payload\":");
        write_value(
            &mut out,
            Some(schema),
            value,
            self.decimal_format,
            &Loc::Root(""),
        )?;
        out.push('}');
        Ok(Some(out.into_bytes()))
    }

    fn decode(&self, bytes: Option<&[u8]>) -> Result<(Option<SchemaRef>, Value), ConvertError> {
        let Some(bytes) = bytes else {
            return Ok((None, Value::Null));
        };
        if bytes.is_empty() && !self.schemas {
            return Ok((None, Value::Null));
        }
        if !self.schemas {
            let json: Json = serde_json::from_slice(bytes)?;
            return Ok((None, Value::from_plain_json(&json)));
        }
        // Serde would also take a two-element array for the struct: only an object is an envelope.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(bytes)?;
            return Err(ConvertError::invalid(ENVELOPE_ERROR));
        }
        let envelope: Envelope<'_> =
            serde_json::from_slice(bytes).map_err(|e| match e.classify() {
                // Valid JSON of another shape: not an envelope.
                serde_json::error::Category::Data => ConvertError::invalid(ENVELOPE_ERROR),
                _ => ConvertError::from(e),
            })?;
        let payload: Json = serde_json::from_str(envelope.payload.get())?;
        let schema_text = envelope.schema.get();
        if schema_text == "null" {
            return Ok((None, Value::from_plain_json(&payload)));
        }
        let schema = self.read_schema_text(schema_text)?;
        let value = read_value(&schema, &payload, &Loc::Root("payload"))?;
        Ok((Some(schema), value))
    }
}

// ---- writing ----

/// Writes a JSON string escaped as Jackson does.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Runs of characters that need no escaping are copied at once.
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if b != b'"' && b != b'\\' && b >= 0x20 {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                let _ = write!(out, "\\u{:04X}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_schema(out: &mut String, schema: &Schema) -> Result<(), ConvertError> {
    write_schema_object(out, schema, None)
}

fn write_schema_object(
    out: &mut String,
    schema: &Schema,
    field_name: Option<&str>,
) -> Result<(), ConvertError> {
    out.push_str("{\"type\":");
    write_str(out, schema.kind.name());
    match schema.kind {
        SchemaType::Array => {
            out.push_str(",\"items\":");
            write_schema(out, child(schema.value_schema.as_deref(), "array items")?)?;
        }
        SchemaType::Map => {
            out.push_str(",\"keys\":");
            write_schema(out, child(schema.key_schema.as_deref(), "map keys")?)?;
            out.push_str(",\"values\":");
            write_schema(out, child(schema.value_schema.as_deref(), "map values")?)?;
        }
        SchemaType::Struct => {
            out.push_str(",\"fields\":[");
            for (i, field) in schema.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema_object(out, &field.schema, Some(&field.name))?;
            }
            out.push(']');
        }
        _ => {}
    }
    out.push_str(",\"optional\":");
    out.push_str(if schema.optional { "true" } else { "false" });
    if let Some(name) = &schema.name {
        out.push_str(",\"name\":");
        write_str(out, name);
    }
    if let Some(version) = schema.version {
        let _ = write!(out, ",\"version\":{version}");
    }
    if let Some(doc) = &schema.doc {
        out.push_str(",\"doc\":");
        write_str(out, doc);
    }
    if !schema.parameters.is_empty() {
        out.push_str(",\"parameters\":{");
        for (i, (k, v)) in schema.parameters.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            write_str(out, v);
        }
        out.push('}');
    }
    if let Some(default) = &schema.default {
        out.push_str(",\"default\":");
        write_value(
            out,
            Some(schema),
            default,
            DecimalFormat::Base64,
            &Loc::Root("default"),
        )?;
    }
    if let Some(name) = field_name {
        out.push_str(",\"field\":");
        write_str(out, name);
    }
    out.push('}');
    Ok(())
}

fn child<'a>(schema: Option<&'a Schema>, what: &str) -> Result<&'a Schema, ConvertError> {
    schema.ok_or_else(|| ConvertError::invalid(format!("schema has no schema for {what}")))
}

fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else if v.fract() == 0.0 && v.abs() < 1e16 {
        let _ = write!(out, "{v:.1}");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn mismatch(path: &Loc<'_>, schema: &Schema, value: &Value) -> ConvertError {
    let path = path.to_string();
    let at = if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    };
    ConvertError::invalid(format!(
        "{at}expected {}, got {}",
        schema.describe(),
        value.type_name()
    ))
}

fn write_value(
    out: &mut String,
    schema: Option<&Schema>,
    value: &Value,
    decimals: DecimalFormat,
    path: &Loc<'_>,
) -> Result<(), ConvertError> {
    let Some(schema) = schema else {
        write_plain(out, value, decimals);
        return Ok(());
    };
    if value.is_null() {
        if let Some(default) = &schema.default {
            return write_value(out, Some(schema), default, decimals, path);
        }
        if schema.optional {
            out.push_str("null");
            return Ok(());
        }
        let path = path.to_string();
        let at = if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        };
        return Err(ConvertError::invalid(format!(
            "{at}null value for a required field with no default"
        )));
    }
    match (schema.kind, value) {
        (SchemaType::Bytes, Value::Decimal(d)) if schema.is_logical(logical::DECIMAL) => {
            let scale = schema.decimal_scale().unwrap_or(d.scale);
            if scale != d.scale {
                return Err(ConvertError::invalid(format!(
                    "{path}: Decimal value has scale {} but its schema has scale {scale}",
                    d.scale
                )));
            }
            d.check().map_err(|e| bad(path, e))?;
            write_decimal(out, d, decimals);
        }
        (SchemaType::Int32, Value::Date(v)) if schema.is_logical(logical::DATE) => {
            let _ = write!(out, "{v}");
        }
        (SchemaType::Int32, Value::Time(v)) if schema.is_logical(logical::TIME) => {
            let _ = write!(out, "{v}");
        }
        (SchemaType::Int64, Value::Timestamp(v)) if schema.is_logical(logical::TIMESTAMP) => {
            let _ = write!(out, "{v}");
        }
        (SchemaType::Int8, Value::Int8(_))
        | (SchemaType::Int16, Value::Int16(_))
        | (SchemaType::Int32, Value::Int32(_))
        | (SchemaType::Int64, Value::Int64(_)) => {
            let _ = write!(out, "{}", value.as_i64().unwrap_or_default());
        }
        (SchemaType::Float32, Value::Float32(v)) => match v.to_string().parse::<f64>() {
            // Through the shortest f32 text, so 12.34f32 stays 12.34 as Java's Float.toString writes it.
            Ok(shortest) if v.is_finite() => write_f64(out, shortest),
            _ => write_f64(out, f64::from(*v)),
        },
        (SchemaType::Float64, Value::Float64(v)) => write_f64(out, *v),
        (SchemaType::Boolean, Value::Boolean(v)) => out.push_str(if *v { "true" } else { "false" }),
        (SchemaType::String, Value::String(s)) => write_str(out, s),
        (SchemaType::Bytes, Value::Bytes(b)) => write_str(out, &BASE64.encode(b)),
        (SchemaType::Array, Value::Array(items)) => {
            let item_schema = child(schema.value_schema.as_deref(), "array items")?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, Some(item_schema), item, decimals, &Loc::Index(path, i))?;
            }
            out.push(']');
        }
        (SchemaType::Map, Value::Map(entries)) => {
            let key_schema = child(schema.key_schema.as_deref(), "map keys")?;
            let value_schema = child(schema.value_schema.as_deref(), "map values")?;
            let object_form = key_schema.kind == SchemaType::String;
            out.push(if object_form { '{' } else { '[' });
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if object_form {
                    let Value::String(k) = k else {
                        return Err(mismatch(&Loc::Field(path, "<key>"), key_schema, k));
                    };
                    write_str(out, k);
                    out.push(':');
                    write_value(out, Some(value_schema), v, decimals, &Loc::Field(path, k))?;
                } else {
                    out.push('[');
                    write_value(
                        out,
                        Some(key_schema),
                        k,
                        decimals,
                        &Loc::Field(path, "<key>"),
                    )?;
                    out.push(',');
                    write_value(
                        out,
                        Some(value_schema),
                        v,
                        decimals,
                        &Loc::Field(path, "<value>"),
                    )?;
                    out.push(']');
                }
            }
            out.push(if object_form { '}' } else { ']' });
        }
        (SchemaType::Struct, Value::Struct(s)) => {
            // Values built from their schema have the fields in schema order: no lookups then.
            let aligned = s.len() == schema.fields.len()
                && s.iter()
                    .zip(&schema.fields)
                    .all(|((name, _), field)| name == field.name);
            if !aligned
                && let Some((name, _)) = s.iter().find(|(name, _)| schema.field(name).is_none())
            {
                return Err(ConvertError::invalid(format!(
                    "{}: field is not in the schema",
                    Loc::Field(path, name)
                )));
            }
            out.push('{');
            for (i, field) in schema.fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, &field.name);
                out.push(':');
                let v = if aligned {
                    s.field_at(i).map(|(_, v)| v)
                } else {
                    s.get(&field.name)
                };
                write_value(
                    out,
                    Some(&field.schema),
                    v.unwrap_or(&Value::Null),
                    decimals,
                    &Loc::Field(path, &field.name),
                )?;
            }
            out.push('}');
        }
        _ => return Err(mismatch(path, schema, value)),
    }
    Ok(())
}

fn write_decimal(out: &mut String, d: &Decimal, decimals: DecimalFormat) {
    match decimals {
        DecimalFormat::Base64 => write_str(out, &BASE64.encode(d.to_bytes())),
        DecimalFormat::Numeric => out.push_str(&d.to_string()),
    }
}

/// Values without a schema, as Kafka Connect writes them from their Java types.
fn write_plain(out: &mut String, value: &Value, decimals: DecimalFormat) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Boolean(v) => out.push_str(if *v { "true" } else { "false" }),
        Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => {
            let _ = write!(out, "{}", value.as_i64().unwrap_or_default());
        }
        Value::Date(v) | Value::Time(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Timestamp(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Float32(v) => write_f64(out, v.to_string().parse().unwrap_or(f64::from(*v))),
        Value::Float64(v) => write_f64(out, *v),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_str(out, &BASE64.encode(b)),
        Value::Decimal(d) => write_decimal(out, d, decimals),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_plain(out, item, decimals);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let object_form = entries.iter().all(|(k, _)| matches!(k, Value::String(_)));
            out.push(if object_form { '{' } else { '[' });
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if object_form {
                    write_plain(out, k, decimals);
                    out.push(':');
                    write_plain(out, v, decimals);
                } else {
                    out.push('[');
                    write_plain(out, k, decimals);
                    out.push(',');
                    write_plain(out, v, decimals);
                    out.push(']');
                }
            }
            out.push(if object_form { '}' } else { ']' });
        }
        Value::Struct(s) => {
            out.push('{');
            for (i, (k, v)) in s.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_plain(out, v, decimals);
            }
            out.push('}');
        }
    }
}

// ---- reading ----

fn bad(path: &(impl std::fmt::Display + ?Sized), message: impl std::fmt::Display) -> ConvertError {
    ConvertError::invalid(format!("{path}: {message}"))
}

fn read_schema(json: &Json, path: &str) -> Result<Schema, ConvertError> {
    let Json::Object(obj) = json else {
        return Err(bad(path, "expected a schema object"));
    };
    let type_name = obj
        .get("type")
        .and_then(Json::as_str)
        .ok_or_else(|| bad(path, "schema has no string `type`"))?;
    let kind = SchemaType::from_name(type_name)
        .ok_or_else(|| bad(path, format!("unknown schema type `{type_name}`")))?;
    let mut schema = Schema::of(kind);
    schema.optional = obj.get("optional").and_then(Json::as_bool).unwrap_or(false);
    schema.name = obj.get("name").and_then(Json::as_str).map(str::to_owned);
    schema.version = obj
        .get("version")
        .and_then(Json::as_i64)
        .and_then(|v| i32::try_from(v).ok());
    schema.doc = obj.get("doc").and_then(Json::as_str).map(str::to_owned);
    if let Some(params) = obj.get("parameters") {
        let Json::Object(params) = params else {
            return Err(bad(path, "schema parameters must be an object"));
        };
        let mut map = BTreeMap::new();
        for (k, v) in params {
            let v = v
                .as_str()
                .ok_or_else(|| bad(path, "schema parameters must have string values"))?;
            map.insert(k.clone(), v.to_owned());
        }
        schema.parameters = map;
    }
    match kind {
        SchemaType::Array => {
            let items = obj
                .get("items")
                .ok_or_else(|| bad(path, "array schema has no `items`"))?;
            schema.value_schema = Some(Arc::new(read_schema(items, &format!("{path}.items"))?));
        }
        SchemaType::Map => {
            let keys = obj
                .get("keys")
                .ok_or_else(|| bad(path, "map schema has no `keys`"))?;
            let values = obj
                .get("values")
                .ok_or_else(|| bad(path, "map schema has no `values`"))?;
            schema.key_schema = Some(Arc::new(read_schema(keys, &format!("{path}.keys"))?));
            schema.value_schema = Some(Arc::new(read_schema(values, &format!("{path}.values"))?));
        }
        SchemaType::Struct => {
            let Some(Json::Array(fields)) = obj.get("fields") else {
                return Err(bad(path, "struct schema has no `fields` list"));
            };
            let mut builder = Schema::struct_builder();
            for (i, f) in fields.iter().enumerate() {
                let fpath = format!("{path}.fields[{i}]");
                let name = f
                    .get("field")
                    .and_then(Json::as_str)
                    .ok_or_else(|| bad(&fpath, "field has no `field` name"))?;
                builder = builder.field(name, read_schema(f, &fpath)?);
            }
            schema.fields = builder.build().fields;
        }
        _ => {}
    }
    if let Some(default) = obj.get("default").filter(|d| !d.is_null()) {
        schema.default = Some(read_value(
            &schema,
            default,
            &Loc::Root(&format!("{path}.default")),
        )?);
    }
    Ok(schema)
}

fn expected(
    path: &(impl std::fmt::Display + ?Sized),
    schema: &Schema,
    json: &Json,
) -> ConvertError {
    let got = match json {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    };
    bad(path, format!("expected {}, got {got}", schema.describe()))
}

fn read_int<T: TryFrom<i64>>(
    path: &(impl std::fmt::Display + ?Sized),
    schema: &Schema,
    json: &Json,
) -> Result<T, ConvertError> {
    json.as_i64()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| expected(path, schema, json))
}

fn read_float(
    path: &(impl std::fmt::Display + ?Sized),
    schema: &Schema,
    json: &Json,
) -> Result<f64, ConvertError> {
    match json {
        Json::Number(n) => n.as_f64().ok_or_else(|| expected(path, schema, json)),
        Json::String(s) if s == "NaN" => Ok(f64::NAN),
        Json::String(s) if s == "Infinity" => Ok(f64::INFINITY),
        Json::String(s) if s == "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => Err(expected(path, schema, json)),
    }
}

fn read_value(schema: &Schema, json: &Json, path: &Loc<'_>) -> Result<Value, ConvertError> {
    if json.is_null() {
        if let Some(default) = &schema.default {
            return Ok(default.clone());
        }
        if schema.optional {
            return Ok(Value::Null);
        }
        return Err(bad(
            path,
            format!("null for a required {} field", schema.describe()),
        ));
    }
    Ok(match schema.kind {
        SchemaType::Int8 => Value::Int8(read_int(path, schema, json)?),
        SchemaType::Int16 => Value::Int16(read_int(path, schema, json)?),
        SchemaType::Int32 if schema.is_logical(logical::DATE) => {
            Value::Date(read_int(path, schema, json)?)
        }
        SchemaType::Int32 if schema.is_logical(logical::TIME) => {
            Value::Time(read_int(path, schema, json)?)
        }
        SchemaType::Int32 => Value::Int32(read_int(path, schema, json)?),
        SchemaType::Int64 if schema.is_logical(logical::TIMESTAMP) => {
            Value::Timestamp(read_int(path, schema, json)?)
        }
        SchemaType::Int64 => Value::Int64(read_int(path, schema, json)?),
        SchemaType::Float32 => Value::Float32(read_float(path, schema, json)? as f32),
        SchemaType::Float64 => Value::Float64(read_float(path, schema, json)?),
        SchemaType::Boolean => {
            Value::Boolean(json.as_bool().ok_or_else(|| expected(path, schema, json))?)
        }
        SchemaType::String => Value::String(
            json.as_str()
                .ok_or_else(|| expected(path, schema, json))?
                .to_owned(),
        ),
        SchemaType::Bytes if schema.is_logical(logical::DECIMAL) => {
            let scale = schema
                .decimal_scale()
                .ok_or_else(|| bad(path, "Decimal schema has no integer `scale` parameter"))?;
            // Bounded here, where the record can still go to the DLQ: written out in full, a
            // huge scale is gigabytes of zeros.
            Decimal::check_scale(i64::from(scale)).map_err(|e| bad(path, e))?;
            match json {
                Json::String(s) => {
                    let bytes = BASE64
                        .decode(s)
                        .map_err(|e| bad(path, format!("invalid base64 Decimal: {e}")))?;
                    Value::Decimal(
                        Decimal::try_from_bytes(&bytes, scale).map_err(|e| bad(path, e))?,
                    )
                }
                Json::Number(n) => {
                    let d = Decimal::parse(&n.to_string())
                        .ok_or_else(|| bad(path, format!("invalid Decimal number {n}")))?;
                    d.check().map_err(|e| bad(path, e))?;
                    Value::Decimal(d)
                }
                _ => return Err(expected(path, schema, json)),
            }
        }
        SchemaType::Bytes => {
            let s = json.as_str().ok_or_else(|| expected(path, schema, json))?;
            Value::Bytes(
                BASE64
                    .decode(s)
                    .map_err(|e| bad(path, format!("invalid base64: {e}")))?,
            )
        }
        SchemaType::Array => {
            let item_schema = child(schema.value_schema.as_deref(), "array items")?;
            let Json::Array(items) = json else {
                return Err(expected(path, schema, json));
            };
            let values = items
                .iter()
                .enumerate()
                .map(|(i, item)| read_value(item_schema, item, &Loc::Index(path, i)));
            Value::Array(values.collect::<Result<_, _>>()?)
        }
        SchemaType::Map => {
            let key_schema = child(schema.key_schema.as_deref(), "map keys")?;
            let value_schema = child(schema.value_schema.as_deref(), "map values")?;
            match json {
                Json::Object(obj) if key_schema.kind == SchemaType::String => Value::Map(
                    obj.iter()
                        .map(|(k, v)| {
                            Ok((
                                Value::String(k.clone()),
                                read_value(value_schema, v, &Loc::Field(path, k))?,
                            ))
                        })
                        .collect::<Result<_, ConvertError>>()?,
                ),
                Json::Array(pairs) => Value::Map(
                    pairs
                        .iter()
                        .map(|pair| match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => Ok((
                                read_value(key_schema, k, &Loc::Field(path, "<key>"))?,
                                read_value(value_schema, v, &Loc::Field(path, "<value>"))?,
                            )),
                            _ => Err(bad(path, "map entries must be [key, value] pairs")),
                        })
                        .collect::<Result<_, ConvertError>>()?,
                ),
                _ => return Err(expected(path, schema, json)),
            }
        }
        SchemaType::Struct => {
            let Json::Object(obj) = json else {
                return Err(expected(path, schema, json));
            };
            let mut s = Struct::new();
            for field in &schema.fields {
                let v = obj.get(&field.name).unwrap_or(&Json::Null);
                s.put(
                    field.name.clone(),
                    read_value(&field.schema, v, &Loc::Field(path, &field.name))?,
                );
            }
            Value::Struct(s)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> JsonConverter {
        JsonConverter::new(true, DecimalFormat::Base64)
    }

    fn text(bytes: Option<Vec<u8>>) -> String {
        String::from_utf8(bytes.unwrap()).unwrap()
    }

    /// Every finite double comes back bit for bit: the JSON text is the shortest that round-trips,
    /// and parsing it must give the same double (serde_json's `float_roundtrip`; without it,
    /// 95.33333333333333 came back as 95.33333333333331 and postgres-sink wrote that).
    #[test]
    fn doubles_survive_encode_and_decode_bit_for_bit() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut doubles = vec![
            95.333_333_333_333_33,
            0.1,
            -0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
        ];
        while doubles.len() < 20_000 {
            // xorshift64*: arbitrary bit patterns, so every exponent and mantissa shape shows up.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let d = f64::from_bits(state.wrapping_mul(0x2545_f491_4f6c_dd1d));
            if d.is_finite() {
                doubles.push(d);
            }
        }
        let schema = Schema::float64();
        for d in doubles {
            let out = on().encode(Some(&schema), &Value::Float64(d)).unwrap();
            let (_, back) = on().decode(out.as_deref()).unwrap();
            let Value::Float64(back) = back else {
                panic!("{d} came back as {back:?}");
            };
            assert_eq!(back.to_bits(), d.to_bits(), "{d} came back as {back}");
            let plain = JsonConverter::new(false, DecimalFormat::Base64);
            let out = plain.encode(None, &Value::Float64(d)).unwrap();
            let (_, back) = plain.decode(out.as_deref()).unwrap();
            match back {
                Value::Float64(back) => assert_eq!(back.to_bits(), d.to_bits(), "{d}"),
                // Schemaless JSON reads an integral double as an integer, as Kafka Connect does.
                Value::Int64(n) => assert_eq!(n as f64, d, "{d}"),
                other => panic!("{d} came back as {other:?}"),
            }
        }
    }

    #[test]
    fn decimal_matches_kafka_connect() {
        let value = Value::Decimal(Decimal::new(156.into(), 2));
        let out = on().encode(Some(&Schema::decimal(2)), &value).unwrap();
        assert_eq!(
            text(out),
            r#"{"schema":{"type":"bytes","optional":false,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{"scale":"2"}},"payload":"AJw="}"#
        );
    }

    #[test]
    fn a_decimal_scale_out_of_bounds_is_a_conversion_error_naming_the_field() {
        let record = |scale: &str, payload: &str| {
            format!(
                r#"{{"schema":{{"type":"struct","fields":[{{"field":"amount","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{{"scale":"{scale}"}}}}]}},"payload":{{"amount":{payload}}}}}"#
            )
        };
        let err = on()
            .decode(Some(record("2147483647", r#""AJw=""#).as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("amount: Decimal scale 2147483647 is out of range"),
            "{err}"
        );
        let err = on()
            .decode(Some(record("-1001", "1").as_bytes()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("amount: Decimal scale"), "{err}");
        let (_, value) = on()
            .decode(Some(record("1000", r#""AJw=""#).as_bytes()))
            .unwrap();
        let Value::Struct(s) = value else {
            panic!("{value:?}")
        };
        assert_eq!(
            s.get("amount"),
            Some(&Value::Decimal(Decimal::new(156.into(), 1000)))
        );
        // Written out too: a Decimal made elsewhere with such a scale is refused, not rendered.
        let huge = Value::Decimal(Decimal::new(156.into(), i32::MAX));
        let err = on()
            .encode(Some(&Schema::decimal(i32::MAX)), &huge)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Decimal scale 2147483647 is out of range"),
            "{err}"
        );
    }

    #[test]
    fn struct_field_name_comes_last_and_defaults_apply() {
        let schema = Schema::struct_builder()
            .field(
                "field1",
                Schema::string()
                    .optional()
                    .with_default(Value::String("default".into())),
            )
            .build();
        let out = on()
            .encode(Some(&schema), &Value::Struct(Struct::new()))
            .unwrap();
        assert_eq!(
            text(out),
            r#"{"schema":{"type":"struct","fields":[{"type":"string","optional":true,"default":"default","field":"field1"}],"optional":false},"payload":{"field1":"default"}}"#
        );
    }

    #[test]
    fn shared_schemas_encode_the_same_bytes() {
        let schema: SchemaRef = Arc::new(
            Schema::struct_builder()
                .name("n")
                .field("a", Schema::decimal(2))
                .build(),
        );
        let value = Value::Struct(Struct::new().with("a", Decimal::new(156.into(), 2)));
        let c = on();
        let plain = c.encode(Some(&schema), &value).unwrap();
        assert_eq!(c.encode_shared(Some(&schema), &value).unwrap(), plain);
        assert_eq!(c.encode_shared(Some(&schema), &value).unwrap(), plain);
        let null = c
            .encode_shared(Some(&Arc::new(Schema::int32().optional())), &Value::Null)
            .unwrap();
        assert_eq!(
            text(null),
            r#"{"schema":{"type":"int32","optional":true},"payload":null}"#
        );
    }

    #[test]
    fn nulls_and_tombstones() {
        assert_eq!(on().encode(None, &Value::Null).unwrap(), None);
        let optional = Schema::int32().optional();
        assert_eq!(
            text(on().encode(Some(&optional), &Value::Null).unwrap()),
            r#"{"schema":{"type":"int32","optional":true},"payload":null}"#
        );
        let err = on()
            .encode(Some(&Schema::int32()), &Value::Null)
            .unwrap_err();
        assert!(err.to_string().contains("null value for a required field"));
        assert_eq!(on().decode(None).unwrap(), (None, Value::Null));
    }

    #[test]
    fn maps_arrays_floats_and_escapes() {
        let schema = Schema::struct_builder()
            .field("m", Schema::map(Schema::int32(), Schema::string()))
            .field("a", Schema::array(Schema::float32()))
            .field("d", Schema::float64())
            .field("s", Schema::string())
            .build();
        let value = Value::Struct(
            Struct::new()
                .with(
                    "m",
                    Value::Map(vec![(Value::Int32(1), Value::String("x".into()))]),
                )
                .with(
                    "a",
                    Value::Array(vec![Value::Float32(12.34), Value::Float32(12.0)]),
                )
                .with("d", 1.5f64)
                .with("s", "q\"\\\n\u{1}"),
        );
        let c = JsonConverter::new(false, DecimalFormat::Base64);
        let out = text(c.encode(Some(&schema), &value).unwrap());
        assert_eq!(
            out,
            r#"{"m":[[1,"x"]],"a":[12.34,12.0],"d":1.5,"s":"q\"\\\n\u0001"}"#
        );
        let back = on()
            .decode(on().encode(Some(&schema), &value).unwrap().as_deref())
            .unwrap();
        assert_eq!(back.1, value);
        assert_eq!(back.0.as_deref(), Some(&schema));
    }

    #[test]
    fn envelope_errors_say_what_to_do() {
        let err = on().decode(Some(br#"{"a":1}"#)).unwrap_err();
        assert!(err.to_string().contains("schemas: false"));
        let err = on().decode(Some(b"{not json")).unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON"));
        let schemaless = JsonConverter::new(false, DecimalFormat::Base64)
            .decode(Some(br#"{"a":1,"b":2.5}"#))
            .unwrap();
        assert_eq!(
            schemaless.1,
            Value::Map(vec![
                (Value::String("a".into()), Value::Int64(1)),
                (Value::String("b".into()), Value::Float64(2.5))
            ])
        );
    }

    #[test]
    fn envelopes_of_other_shapes_are_refused_and_schemas_are_read_once() {
        for bad in [
            r#"{"schema":null}"#,
            r#"{"payload":1}"#,
            r#"{"schema":null,"payload":1,"extra":2}"#,
            r#"[1,2]"#,
            r#""text""#,
        ] {
            let err = on().decode(Some(bad.as_bytes())).unwrap_err();
            assert!(err.to_string().contains("schemas: false"), "{bad}: {err}");
        }
        let converter = on();
        let message = |n: i32| {
            format!(
                r#"{{"schema":{{"type":"struct","fields":[{{"type":"int32","optional":false,"field":"n"}}],"optional":false}},"payload":{{"n":{n}}}}}"#
            )
        };
        let (first, a) = converter.decode(Some(message(1).as_bytes())).unwrap();
        let (second, b) = converter.decode(Some(message(2).as_bytes())).unwrap();
        assert!(Arc::ptr_eq(
            first.as_ref().unwrap(),
            second.as_ref().unwrap()
        ));
        assert_ne!(a, b);
        // Whitespace inside the envelope is fine; a null schema reads the payload as plain JSON.
        let (none, plain) = converter
            .decode(Some(br#"{ "schema" : null , "payload" : {"x": [1, 2]} }"#))
            .unwrap();
        assert!(none.is_none());
        assert_eq!(
            plain,
            Value::Map(vec![(
                Value::String("x".into()),
                Value::Array(vec![Value::Int64(1), Value::Int64(2)])
            )])
        );
    }

    #[test]
    fn wrong_payload_types_name_the_path() {
        let schema_json = r#"{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"n"}],"optional":false},"payload":{"n":"x"}}"#;
        let err = on().decode(Some(schema_json.as_bytes())).unwrap_err();
        assert_eq!(err.to_string(), "payload.n: expected int32, got string");
    }
}
