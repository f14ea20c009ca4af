//! Connect values -> the Postgres text form of the column they go to, and Connect schemas ->
//! column types for `auto_create`/`auto_evolve`. The inverse of `source::types`: Decimal and
//! Debezium's VariableScaleDecimal as numeric text, Date/Time/Timestamp from their days and
//! milliseconds (in UTC), ZonedTimestamp, Uuid and Json strings as they are, bytes as `\x` hex,
//! arrays as array literals. Every value crosses as text in a `text[]` bind and the statement
//! casts it to the column's type, so Postgres parses each type exactly as it prints it.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveTime};
use sluice_connector_api::{Decimal, Schema, SchemaType, Value, logical};

pub(crate) const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";
const ZONED_TIMESTAMP: &str = "io.debezium.time.ZonedTimestamp";
const UUID: &str = "io.debezium.data.Uuid";
const JSON: &str = "io.debezium.data.Json";

/// What kind of column a value goes to, where the same value is written differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `json`/`jsonb`: arrays, maps and structs as JSON.
    Json,
    /// An array column of this element kind.
    Array(Box<Target>),
    /// Anything else: the value's own text form.
    Scalar,
}

impl Target {
    /// From the type name `format_type(atttypid, NULL)` prints.
    pub(crate) fn of(type_name: &str) -> Self {
        if let Some(element) = type_name.strip_suffix("[]") {
            return Self::Array(Box::new(Self::of(element)));
        }
        match type_name {
            "json" | "jsonb" => Self::Json,
            _ => Self::Scalar,
        }
    }
}

/// The text Postgres parses back into the value, `None` for SQL NULL.
pub(crate) fn text(value: &Value, target: &Target) -> Result<Option<String>, String> {
    if value.is_null() {
        return Ok(None);
    }
    let mut out = String::new();
    write(&mut out, value, target)?;
    Ok(Some(out))
}

fn write(out: &mut String, value: &Value, target: &Target) -> Result<(), String> {
    match (value, target) {
        (Value::Null, _) => out.push_str("NULL"),
        (Value::Array(_) | Value::Map(_) | Value::Struct(_), Target::Json) => {
            out.push_str(&String::from_utf8_lossy(&value.to_plain_json_bytes()));
        }
        (Value::Array(items), target) => {
            let element = match target {
                Target::Array(element) => element,
                _ => &Target::Scalar,
            };
            write_array(out, items, element)?;
        }
        (Value::Boolean(b), _) => out.push(if *b { 't' } else { 'f' }),
        (Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_), _) => {
            let _ = write!(out, "{}", value.as_i64().unwrap_or_default());
        }
        (Value::Float32(v), _) => write_float(out, f64::from(*v), v.to_string()),
        (Value::Float64(v), _) => write_float(out, *v, v.to_string()),
        (Value::String(s), _) => out.push_str(s),
        (Value::Bytes(bytes), _) => {
            out.push_str("\\x");
            for b in bytes {
                let _ = write!(out, "{b:02x}");
            }
        }
        (Value::Decimal(d), _) => {
            let _ = write!(out, "{d}");
        }
        (Value::Date(days), _) => {
            let date = NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days((*days).into())))
                .ok_or_else(|| format!("Date {days} days is out of range"))?;
            let _ = write!(out, "{}", date.format("%Y-%m-%d"));
        }
        (Value::Time(ms), _) => {
            let time = u32::try_from(*ms)
                .ok()
                .and_then(|ms| {
                    NaiveTime::from_num_seconds_from_midnight_opt(
                        ms / 1000,
                        (ms % 1000) * 1_000_000,
                    )
                })
                .ok_or_else(|| format!("Time {ms} ms is not a time of day"))?;
            let _ = write!(out, "{}", time.format("%H:%M:%S%.3f"));
        }
        (Value::Timestamp(ms), _) => {
            let ts = DateTime::from_timestamp_millis(*ms)
                .ok_or_else(|| format!("Timestamp {ms} ms is out of range"))?;
            // The offset makes it exact for timestamptz; timestamp ignores it.
            let _ = write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S%.3f+00"));
        }
        (Value::Struct(_), _) => match variable_scale_decimal(value) {
            Some(d) => {
                let _ = write!(out, "{d}");
            }
            None => out.push_str(&String::from_utf8_lossy(&value.to_plain_json_bytes())),
        },
        (Value::Map(_), _) => {
            out.push_str(&String::from_utf8_lossy(&value.to_plain_json_bytes()));
        }
    }
    Ok(())
}

fn write_float(out: &mut String, v: f64, shortest: String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&shortest);
    }
}

/// `{a,"b c",NULL}`: every element quoted (so no element text needs inspecting) but nested
/// arrays and NULLs.
fn write_array(out: &mut String, items: &[Value], element: &Target) -> Result<(), String> {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::Array(inner) if !matches!(element, Target::Json) => {
                write_array(out, inner, element)?;
            }
            item => {
                let mut text = String::new();
                write(&mut text, item, element)?;
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    Ok(())
}

/// Debezium's `{scale, value}` struct of an unconstrained numeric.
fn variable_scale_decimal(value: &Value) -> Option<Decimal> {
    let Value::Struct(s) = value else {
        return None;
    };
    if s.len() != 2 {
        return None;
    }
    let scale = i32::try_from(s.get("scale")?.as_i64()?).ok()?;
    match s.get("value")? {
        Value::Bytes(bytes) => Some(Decimal::from_bytes(bytes, scale)),
        _ => None,
    }
}

/// The column type for a field with this schema (`auto_create`, `auto_evolve`).
pub(crate) fn column_type(schema: &Schema) -> String {
    match schema.name.as_deref() {
        Some(logical::DECIMAL) => {
            let scale = schema.decimal_scale().unwrap_or(0);
            return match schema.parameters.get("connect.decimal.precision") {
                Some(p) => format!("numeric({p},{scale})"),
                None => "numeric".to_owned(),
            };
        }
        Some(logical::DATE) => return "date".to_owned(),
        Some(logical::TIME) => return "time".to_owned(),
        Some(logical::TIMESTAMP) => return "timestamp".to_owned(),
        Some(ZONED_TIMESTAMP) => return "timestamptz".to_owned(),
        Some(UUID) => return "uuid".to_owned(),
        Some(JSON) => return "jsonb".to_owned(),
        Some(VARIABLE_SCALE_DECIMAL) => return "numeric".to_owned(),
        _ => {}
    }
    match schema.kind {
        SchemaType::Int8 | SchemaType::Int16 => "smallint".to_owned(),
        SchemaType::Int32 => "integer".to_owned(),
        SchemaType::Int64 => "bigint".to_owned(),
        SchemaType::Float32 => "real".to_owned(),
        SchemaType::Float64 => "double precision".to_owned(),
        SchemaType::Boolean => "boolean".to_owned(),
        SchemaType::String => "text".to_owned(),
        SchemaType::Bytes => "bytea".to_owned(),
        SchemaType::Array => match schema.value_schema.as_deref() {
            Some(element) if !matches!(element.kind, SchemaType::Array | SchemaType::Map) => {
                format!("{}[]", column_type(element))
            }
            _ => "jsonb".to_owned(),
        },
        SchemaType::Map | SchemaType::Struct => "jsonb".to_owned(),
    }
}

/// The column type for a value of a schemaless record; `text` when it is null.
pub(crate) fn value_type(value: &Value) -> String {
    match value {
        Value::Null | Value::String(_) => "text",
        Value::Boolean(_) => "boolean",
        Value::Int8(_) | Value::Int16(_) => "smallint",
        Value::Int32(_) => "integer",
        Value::Int64(_) => "bigint",
        Value::Float32(_) => "real",
        Value::Float64(_) => "double precision",
        Value::Bytes(_) => "bytea",
        Value::Decimal(_) => "numeric",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::Array(_) | Value::Map(_) | Value::Struct(_) => "jsonb",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::Struct;

    fn scalar(value: Value) -> Option<String> {
        text(&value, &Target::Scalar).unwrap()
    }

    #[test]
    fn values_print_as_postgres_reads_them() {
        assert_eq!(scalar(Value::Null), None);
        assert_eq!(scalar(Value::Boolean(true)).as_deref(), Some("t"));
        assert_eq!(scalar(Value::Int16(-2)).as_deref(), Some("-2"));
        assert_eq!(
            scalar(Value::Float64(f64::NEG_INFINITY)).as_deref(),
            Some("-Infinity")
        );
        assert_eq!(scalar(Value::Float32(0.1)).as_deref(), Some("0.1"));
        assert_eq!(
            scalar(Value::Bytes(vec![0, 255])).as_deref(),
            Some("\\x00ff")
        );
        assert_eq!(
            scalar(Value::Decimal(Decimal::new((-1230).into(), 2))).as_deref(),
            Some("-12.30")
        );
        let free = Value::Struct(
            Struct::new()
                .with("scale", 1i32)
                .with("value", Value::Bytes(vec![15])),
        );
        assert_eq!(scalar(free).as_deref(), Some("1.5"));
        assert_eq!(scalar(Value::Date(19782)).as_deref(), Some("2024-02-29"));
        assert_eq!(
            scalar(Value::Time(49530500)).as_deref(),
            Some("13:45:30.500")
        );
        assert_eq!(
            scalar(Value::Timestamp(1709214330123)).as_deref(),
            Some("2024-02-29 13:45:30.123+00")
        );
    }

    #[test]
    fn arrays_quote_their_elements_and_json_columns_get_json() {
        let tags = Value::Array(vec!["x".into(), "y \"z\"\\".into(), Value::Null]);
        let texts = Target::of("text[]");
        assert_eq!(
            text(&tags, &texts).unwrap().as_deref(),
            Some(r#"{"x","y \"z\"\\",NULL}"#)
        );
        let blobs = Value::Array(vec![Value::Bytes(vec![1])]);
        assert_eq!(
            text(&blobs, &Target::of("bytea[]")).unwrap().as_deref(),
            Some(r#"{"\\x01"}"#)
        );
        assert_eq!(
            text(&tags, &Target::of("jsonb")).unwrap().as_deref(),
            Some(r#"["x","y \"z\"\\",null]"#)
        );
    }

    #[test]
    fn schemas_give_column_types() {
        assert_eq!(
            column_type(&Schema::decimal(2).with_parameter("connect.decimal.precision", "10")),
            "numeric(10,2)"
        );
        assert_eq!(
            column_type(&Schema::array(Schema::int32().optional())),
            "integer[]"
        );
        assert_eq!(column_type(&Schema::string().named(UUID)), "uuid");
        assert_eq!(column_type(&Schema::timestamp()), "timestamp");
    }
}
