//! Postgres types -> Kafka Connect schemas and values, from the text format that pgoutput and
//! `::text` casts produce. Temporal types use Kafka Connect's logical types (Debezium's
//! `time.precision.mode=connect`); `timestamptz` is Debezium's `ZonedTimestamp` string in UTC;
//! `numeric(p,s)` is a Decimal of scale s, unconstrained `numeric` Debezium's
//! `VariableScaleDecimal`; uuid, json/jsonb and enums are strings named as Debezium names them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Timelike, Utc};
use sluice_connector_api::{Decimal, Schema, Struct, Value};

pub(crate) const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

/// A column type Sluice knows how to map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PgType {
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Bool,
    /// `numeric(p,s)` has a scale; unconstrained numeric does not.
    Numeric {
        precision: Option<i32>,
        scale: Option<i32>,
    },
    Text,
    Bytea,
    Uuid,
    Json,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Enum {
        values: Vec<String>,
    },
    Array(Box<PgType>),
    /// Anything else: passed on as its text, with a warning when first seen.
    Other(String),
}

/// Parses `text` as the CDC reader parses a column of built-in type `oid` (with `typmod`) in a
/// pgoutput change; `None` for an OID that is not built in. For the fuzzer (`fuzz/`).
pub fn parse_column_text(oid: u32, typmod: i32, text: &str) -> Option<Result<Value, String>> {
    builtin(oid, typmod).map(|t| t.parse(text))
}

/// Built-in type OIDs (pg_type.dat). Arrays and enums of other types come from the catalog.
pub(crate) fn builtin(oid: u32, typmod: i32) -> Option<PgType> {
    Some(match oid {
        16 => PgType::Bool,
        17 => PgType::Bytea,
        18 | 19 | 25 | 1042 | 1043 => PgType::Text,
        20 => PgType::Int8,
        21 => PgType::Int2,
        23 => PgType::Int4,
        26 => PgType::Int8,
        114 | 3802 => PgType::Json,
        700 => PgType::Float4,
        701 => PgType::Float8,
        1082 => PgType::Date,
        1083 => PgType::Time,
        1114 => PgType::Timestamp,
        1184 => PgType::TimestampTz,
        1700 => numeric(typmod),
        2950 => PgType::Uuid,
        1000 => PgType::Array(Box::new(PgType::Bool)),
        1001 => PgType::Array(Box::new(PgType::Bytea)),
        1005 => PgType::Array(Box::new(PgType::Int2)),
        1007 => PgType::Array(Box::new(PgType::Int4)),
        1009 | 1015 | 1014 => PgType::Array(Box::new(PgType::Text)),
        1016 => PgType::Array(Box::new(PgType::Int8)),
        1021 => PgType::Array(Box::new(PgType::Float4)),
        1022 => PgType::Array(Box::new(PgType::Float8)),
        1182 => PgType::Array(Box::new(PgType::Date)),
        1115 => PgType::Array(Box::new(PgType::Timestamp)),
        1185 => PgType::Array(Box::new(PgType::TimestampTz)),
        1231 => PgType::Array(Box::new(numeric(typmod))),
        2951 => PgType::Array(Box::new(PgType::Uuid)),
        199 | 3807 => PgType::Array(Box::new(PgType::Json)),
        _ => return None,
    })
}

pub(crate) fn numeric(typmod: i32) -> PgType {
    if typmod < 4 {
        return PgType::Numeric {
            precision: None,
            scale: None,
        };
    }
    let t = typmod - 4;
    PgType::Numeric {
        precision: Some((t >> 16) & 0xffff),
        scale: Some(t & 0xffff),
    }
}

impl PgType {
    /// The Connect schema of a column of this type (always optional but for key columns).
    pub(crate) fn schema(&self, optional: bool) -> Schema {
        let schema = match self {
            Self::Int2 => Schema::int16(),
            Self::Int4 => Schema::int32(),
            Self::Int8 => Schema::int64(),
            Self::Float4 => Schema::float32(),
            Self::Float8 => Schema::float64(),
            Self::Bool => Schema::boolean(),
            Self::Numeric {
                precision,
                scale: Some(scale),
            } => {
                let s = Schema::decimal(*scale);
                match precision {
                    Some(p) => s.with_parameter("connect.decimal.precision", p.to_string()),
                    None => s,
                }
            }
            Self::Numeric { scale: None, .. } => Schema::struct_builder()
                .name(VARIABLE_SCALE_DECIMAL)
                .doc("Variable scaled decimal")
                .field("scale", Schema::int32())
                .field("value", Schema::bytes())
                .build(),
            Self::Text | Self::Other(_) => Schema::string(),
            Self::Bytea => Schema::bytes(),
            Self::Uuid => Schema::string().named("io.debezium.data.Uuid").versioned(1),
            Self::Json => Schema::string().named("io.debezium.data.Json").versioned(1),
            Self::Date => Schema::date(),
            Self::Time => Schema::time(),
            Self::Timestamp => Schema::timestamp(),
            Self::TimestampTz => Schema::string()
                .named("io.debezium.time.ZonedTimestamp")
                .versioned(1),
            Self::Enum { values } => Schema::string()
                .named("io.debezium.data.Enum")
                .versioned(1)
                .with_parameter("allowed", values.join(",")),
            Self::Array(element) => Schema::array(element.schema(true)),
        };
        if optional { schema.optional() } else { schema }
    }

    /// Whether the type is stored out of line (TOAST) when large, so pgoutput may send it as
    /// "unchanged".
    pub(crate) fn toastable(&self) -> bool {
        matches!(
            self,
            Self::Text
                | Self::Bytea
                | Self::Json
                | Self::Array(_)
                | Self::Other(_)
                | Self::Numeric { .. }
        )
    }

    /// The placeholder for an unchanged TOAST value, as Debezium's `unavailable.value.placeholder`.
    pub(crate) fn placeholder(&self, placeholder: &str) -> Value {
        match self {
            Self::Bytea => Value::Bytes(placeholder.as_bytes().to_vec()),
            Self::Array(element) => Value::Array(vec![element.placeholder(placeholder)]),
            Self::Text | Self::Json | Self::Other(_) | Self::Enum { .. } | Self::Uuid => {
                Value::String(placeholder.to_owned())
            }
            // A numeric can only be toasted when huge; there is no placeholder of its type.
            _ => Value::Null,
        }
    }

    /// Parses the Postgres text form of a value of this type.
    pub(crate) fn parse(&self, text: &str) -> Result<Value, String> {
        let bad = |what: &str| format!("invalid {what} `{text}`");
        Ok(match self {
            Self::Int2 => Value::Int16(text.parse().map_err(|_| bad("int2"))?),
            Self::Int4 => Value::Int32(text.parse().map_err(|_| bad("int4"))?),
            Self::Int8 => Value::Int64(text.parse().map_err(|_| bad("int8"))?),
            Self::Float4 => Value::Float32(parse_float(text).ok_or_else(|| bad("float4"))? as f32),
            Self::Float8 => Value::Float64(parse_float(text).ok_or_else(|| bad("float8"))?),
            Self::Bool => match text {
                "t" | "true" => Value::Boolean(true),
                "f" | "false" => Value::Boolean(false),
                _ => return Err(bad("bool")),
            },
            Self::Numeric { scale, .. } => {
                if text == "NaN" || text.ends_with("Infinity") {
                    return Err(format!("numeric `{text}` has no Decimal representation"));
                }
                let d = Decimal::parse(text).ok_or_else(|| bad("numeric"))?;
                match scale {
                    Some(scale) => {
                        Value::Decimal(rescale(d, *scale).ok_or_else(|| bad("numeric"))?)
                    }
                    None => Value::Struct(
                        Struct::new()
                            .with("scale", d.scale)
                            .with("value", Value::Bytes(d.to_bytes())),
                    ),
                }
            }
            Self::Text | Self::Uuid | Self::Json | Self::Enum { .. } | Self::Other(_) => {
                Value::String(text.to_owned())
            }
            Self::Bytea => Value::Bytes(parse_bytea(text).ok_or_else(|| bad("bytea"))?),
            Self::Date => {
                let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad("date"))?;
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).ok_or_else(|| bad("date"))?;
                Value::Date(i32::try_from((date - epoch).num_days()).map_err(|_| bad("date"))?)
            }
            Self::Time => {
                let time =
                    NaiveTime::parse_from_str(text, "%H:%M:%S%.f").map_err(|_| bad("time"))?;
                Value::Time(
                    (time.num_seconds_from_midnight() * 1000 + time.nanosecond() / 1_000_000)
                        as i32,
                )
            }
            Self::Timestamp => {
                let ts = parse_datetime(text).ok_or_else(|| bad("timestamp"))?;
                Value::Timestamp(ts.and_utc().timestamp_millis())
            }
            Self::TimestampTz => {
                let ts = parse_timestamptz(text).ok_or_else(|| bad("timestamptz"))?;
                Value::String(ts.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Self::Array(element) => Value::Array(parse_array(element, text)?),
        })
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn rescale(d: Decimal, scale: i32) -> Option<Decimal> {
    if d.scale == scale {
        return Some(d);
    }
    if d.scale < scale {
        let factor = num_bigint::BigInt::from(10).pow((scale - d.scale) as u32);
        return Some(Decimal::new(d.unscaled * factor, scale));
    }
    None
}

/// Postgres' hex bytea text, `\x0aff`. By bytes: a multi-byte character where a digit pair was
/// expected is a bad value, not a slice through the character.
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?.as_bytes();
    if hex.len() % 2 != 0 {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    hex.chunks_exact(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

fn parse_timestamptz(text: &str) -> Option<DateTime<Utc>> {
    // Postgres writes offsets as +HH, +HH:MM or +HH:MM:SS.
    let split = text.rfind(['+', '-']).filter(|&i| i > 10)?;
    let (local, offset) = text.split_at(split);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut parts = offset[1..].split(':').map(|p| p.parse::<i64>().ok());
    let hours = parts.next()??;
    let minutes = parts.next().flatten().unwrap_or(0);
    let seconds = parts.next().flatten().unwrap_or(0);
    // Postgres' offsets stay within ±16 hours; anything larger is not a timestamptz (and would
    // overflow the arithmetic below).
    if !(0..100).contains(&hours) || !(0..60).contains(&minutes) || !(0..60).contains(&seconds) {
        return None;
    }
    let naive = parse_datetime(local)?;
    let offset_secs = sign * (hours * 3600 + minutes * 60 + seconds);
    let utc = naive.checked_sub_signed(chrono::Duration::seconds(offset_secs))?;
    Some(DateTime::from_naive_utc_and_offset(utc, Utc))
}

/// Parses Postgres' `YYYY-MM-DD HH:MM:SS[.f]`: the common shape by hand (chrono re-reads its
/// format string on every call, a measurable cost per captured row), anything else by chrono.
fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    fast_datetime(text.as_bytes())
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok())
}

fn fast_datetime(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let nanos = match &b[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            let n = num(20..b.len())?;
            n * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?.and_hms_nano_opt(
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        nanos,
    )
}

/// Parses a one-dimensional array literal such as `{1,2,NULL}` or `{"a b","c\"d"}`.
fn parse_array(element: &PgType, text: &str) -> Result<Vec<Value>, String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("invalid array `{text}`"))?;
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    if inner.starts_with('{') {
        return Err(format!("multi-dimensional array `{text}` is not supported"));
    }
    let mut values = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.extend(chars.next()),
                    '"' => break,
                    c => item.push(c),
                }
            }
        }
        while let Some(&c) = chars.peek() {
            if c == ',' {
                break;
            }
            item.push(c);
            chars.next();
        }
        values.push(if !quoted && item == "NULL" {
            Value::Null
        } else {
            element.parse(&item)?
        });
        if chars.next().is_none() {
            break;
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamptz_offset_out_of_range_is_a_bad_value() {
        let ok = parse_timestamptz("2024-02-29 12:34:56.789+05:30").unwrap();
        assert_eq!(ok.to_rfc3339(), "2024-02-29T07:04:56.789+00:00");
        // Found by the fuzzer: an offset of 9254775808 hours overflowed the date arithmetic.
        assert_eq!(
            parse_timestamptz("2024-02-29 12:34:56.789+09254775808:30"),
            None
        );
        assert_eq!(parse_timestamptz("+262142-12-31 23:59:59-15:00"), None);
        assert_eq!(parse_timestamptz("2024-02-29 12:34:56+05:60"), None);
    }

    #[test]
    fn bytea_text_is_read_by_bytes() {
        assert_eq!(parse_bytea("\\x00ff7A"), Some(vec![0, 255, 0x7a]));
        // Found by the fuzzer: a character of two bytes where a digit pair is expected.
        assert_eq!(parse_bytea("\\x}\u{4fd}f"), None);
        assert_eq!(parse_bytea("\\x+f"), None);
        assert_eq!(parse_bytea("\\x0"), None);
    }

    #[test]
    fn datetimes_parse_the_same_by_hand_and_by_chrono() {
        for text in [
            "2024-02-29 23:59:59",
            "2024-02-29 23:59:59.5",
            "1999-01-01 00:00:00.123456",
            "2000-12-31 12:34:56.000001",
            "12345-01-01 00:00:00",
            "2024-02-30 00:00:00",
            "2024-01-01 00:00:00.",
            "2024-01-01T00:00:00",
        ] {
            assert_eq!(
                parse_datetime(text),
                NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_the_text_forms() {
        assert_eq!(PgType::Int2.parse("-5"), Ok(Value::Int16(-5)));
        assert_eq!(PgType::Bool.parse("t"), Ok(Value::Boolean(true)));
        let money = numeric(((10 << 16) | 2) + 4);
        assert_eq!(
            money.parse("12.30"),
            Ok(Value::Decimal(Decimal::new(1230.into(), 2)))
        );
        assert_eq!(
            money.parse("12"),
            Ok(Value::Decimal(Decimal::new(1200.into(), 2)))
        );
        let free = numeric(-1);
        assert_eq!(
            free.parse("1.5"),
            Ok(Value::Struct(
                Struct::new()
                    .with("scale", 1i32)
                    .with("value", Value::Bytes(vec![15]))
            ))
        );
        assert_eq!(
            PgType::Bytea.parse("\\x00ff"),
            Ok(Value::Bytes(vec![0, 255]))
        );
        assert_eq!(PgType::Date.parse("1970-01-02"), Ok(Value::Date(1)));
        assert_eq!(PgType::Time.parse("00:00:01.5"), Ok(Value::Time(1500)));
        assert_eq!(
            PgType::Timestamp.parse("1970-01-01 00:00:01.25"),
            Ok(Value::Timestamp(1250))
        );
        assert_eq!(
            PgType::TimestampTz.parse("2024-03-01 12:00:00.5+02"),
            Ok(Value::String("2024-03-01T10:00:00.500Z".into()))
        );
        assert_eq!(
            PgType::TimestampTz.parse("2024-03-01 12:00:00-05:30"),
            Ok(Value::String("2024-03-01T17:30:00Z".into()))
        );
        assert!(
            PgType::Int4
                .parse("x")
                .unwrap_err()
                .contains("invalid int4")
        );
    }

    #[test]
    fn parses_arrays_with_quotes_and_nulls() {
        let ints = PgType::Array(Box::new(PgType::Int4));
        assert_eq!(
            ints.parse("{1,NULL,3}"),
            Ok(Value::Array(vec![1i32.into(), Value::Null, 3i32.into()]))
        );
        let texts = PgType::Array(Box::new(PgType::Text));
        assert_eq!(
            texts.parse(r#"{"a b","c\"d",e,"NULL"}"#),
            Ok(Value::Array(vec![
                "a b".into(),
                "c\"d".into(),
                "e".into(),
                "NULL".into()
            ]))
        );
        assert_eq!(texts.parse("{}"), Ok(Value::Array(vec![])));
    }
}
