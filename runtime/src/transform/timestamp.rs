//! TimestampConverter, and Java `SimpleDateFormat` patterns (as Kafka Connect's `format` and
//! `timestamp.format` properties take them) translated to chrono. Times are in UTC, as Kafka
//! Connect's transforms use them.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use sluice_connector_api::{Schema, SchemaRef, SchemaType, Struct, Value, logical};

use super::cache::SchemaCache;
use super::part::{Side, map_put, require_map, require_struct, struct_like, wrong_type};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "TimestampConverter";
const MS_PER_DAY: i64 = 86_400_000;

/// A `SimpleDateFormat` pattern and its chrono equivalent.
#[derive(Debug, Clone)]
pub(crate) struct JavaFormat {
    pattern: String,
    strftime: String,
}

impl JavaFormat {
    /// Translates the common pattern letters (`y M d H h m s S a E D Z`, quoted literals).
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        let mut out = String::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // Quoted literal; '' is a quote.
                if chars.get(i + 1) == Some(&'\'') {
                    out.push('\'');
                    i += 2;
                    continue;
                }
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("has an unclosed quote".to_owned()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            out.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('%') => {
                            out.push_str("%%");
                            i += 1;
                        }
                        Some(c) => {
                            out.push(*c);
                            i += 1;
                        }
                    }
                }
                continue;
            }
            if !c.is_ascii_alphabetic() {
                if c == '%' {
                    out.push_str("%%");
                } else {
                    out.push(c);
                }
                i += 1;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&x| x == c).count();
            let item = match (c, run) {
                ('y', 2) => "%y",
                ('y', _) => "%Y",
                ('M', 1) => "%-m",
                ('M', 2) => "%m",
                ('M', 3) => "%b",
                ('M', _) => "%B",
                ('d', 1) => "%-d",
                ('d', _) => "%d",
                ('H', 1) => "%-H",
                ('H', _) => "%H",
                ('h', 1) => "%-I",
                ('h', _) => "%I",
                ('m', 1) => "%-M",
                ('m', _) => "%M",
                ('s', 1) => "%-S",
                ('s', _) => "%S",
                ('S', 1..=3) => "%3f",
                ('S', 6) => "%6f",
                ('S', 9) => "%9f",
                ('a', _) => "%p",
                ('E', 1..=3) => "%a",
                ('E', _) => "%A",
                ('D', _) => "%j",
                ('Z', _) => "%z",
                _ => {
                    return Err(format!(
                        "uses `{}`, which Sluice does not support (supported: y M d H h m s S \
                         a E D Z and 'quoted text')",
                        c.to_string().repeat(run)
                    ));
                }
            };
            out.push_str(item);
            i += run;
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            strftime: out,
        })
    }

    /// A format property, its default when absent; errors are recorded on `p`.
    pub(crate) fn from_prop(p: &Props, name: &str, default: Option<&str>) -> Option<Self> {
        let pattern = p.string(name).or_else(|| default.map(str::to_owned))?;
        Self::parse(&pattern)
            .map_err(|e| p.error(name, format!("invalid date format `{pattern}`: it {e}")))
            .ok()
    }
}

/// Milliseconds since the epoch as text in `format`, in UTC.
pub(crate) fn format_millis(format: &JavaFormat, millis: i64) -> Result<String, String> {
    let time = DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| format!("timestamp {millis} is out of range"))?;
    Ok(time.format(&format.strftime).to_string())
}

/// Text in `format` as milliseconds since the epoch; date-only formats mean midnight UTC and
/// time-only formats 1970-01-01, as `SimpleDateFormat` does.
pub(crate) fn parse_millis(format: &JavaFormat, text: &str) -> Result<i64, String> {
    let f = format.strftime.as_str();
    if f.contains("%z")
        && let Ok(t) = DateTime::parse_from_str(text, f)
    {
        return Ok(t.timestamp_millis());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, f) {
        return Ok(t.and_utc().timestamp_millis());
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, f) {
        return Ok(d.and_time(NaiveTime::MIN).and_utc().timestamp_millis());
    }
    if let Ok(t) = NaiveTime::parse_from_str(text, f) {
        return Ok(NaiveDate::default()
            .and_time(t)
            .and_utc()
            .timestamp_millis());
    }
    Err(format!("it does not match the format `{}`", format.pattern))
}

/// What a timestamp is represented as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Unix,
    Date,
    Time,
    Timestamp,
}

impl Kind {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "unix" => Self::Unix,
            "Date" => Self::Date,
            "Time" => Self::Time,
            "Timestamp" => Self::Timestamp,
            _ => return None,
        })
    }

    fn of_schema(schema: &Schema) -> Option<Self> {
        match (schema.name.as_deref(), schema.kind) {
            (Some(logical::TIMESTAMP), _) => Some(Self::Timestamp),
            (Some(logical::DATE), _) => Some(Self::Date),
            (Some(logical::TIME), _) => Some(Self::Time),
            (_, SchemaType::Int64) => Some(Self::Unix),
            (_, SchemaType::String) => Some(Self::String),
            _ => None,
        }
    }

    fn schema(self, optional: bool) -> Schema {
        let schema = match self {
            Self::String => Schema::string(),
            Self::Unix => Schema::int64(),
            Self::Date => Schema::date(),
            Self::Time => Schema::time(),
            Self::Timestamp => Schema::timestamp(),
        };
        if optional { schema.optional() } else { schema }
    }
}

#[derive(Debug, Clone, Copy)]
enum Precision {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

struct TimestampConverter {
    side: Side,
    /// Empty: the whole key or value.
    field: String,
    target: Kind,
    format: Option<JavaFormat>,
    precision: Precision,
    schemas: SchemaCache,
}

impl TimestampConverter {
    fn what(&self) -> String {
        if self.field.is_empty() {
            format!("the {}", self.side.name())
        } else {
            format!("field `{}`", self.field)
        }
    }

    fn to_millis(&self, kind: Kind, value: &Value) -> Result<i64, TransformError> {
        let mismatch = || wrong_type(NAME, self.what(), value, "a timestamp");
        Ok(match (kind, value) {
            (Kind::Timestamp, Value::Timestamp(ms) | Value::Int64(ms)) => *ms,
            (Kind::Date, Value::Date(days) | Value::Int32(days)) => i64::from(*days) * MS_PER_DAY,
            (Kind::Time, Value::Time(ms) | Value::Int32(ms)) => i64::from(*ms),
            (Kind::Unix, v) => {
                let n = v.as_i64().ok_or_else(mismatch)?;
                match self.precision {
                    Precision::Seconds => n.saturating_mul(1000),
                    Precision::Milliseconds => n,
                    Precision::Microseconds => n.div_euclid(1000),
                    Precision::Nanoseconds => n.div_euclid(1_000_000),
                }
            }
            (Kind::String, Value::String(s)) => {
                let format = self.format.as_ref().ok_or_else(|| {
                    TransformError::record(
                        NAME,
                        format!("{} is a string; set `format` to parse it", self.what()),
                    )
                })?;
                parse_millis(format, s).map_err(|reason| TransformError::Convert {
                    transform: NAME,
                    what: self.what(),
                    value: s.clone(),
                    target: "a timestamp".to_owned(),
                    reason,
                })?
            }
            _ => return Err(mismatch()),
        })
    }

    fn target_value(&self, ms: i64) -> Result<Value, TransformError> {
        Ok(match self.target {
            Kind::Timestamp => Value::Timestamp(ms),
            Kind::Date => Value::Date(i32::try_from(ms.div_euclid(MS_PER_DAY)).map_err(|_| {
                TransformError::record(NAME, format!("{ms} is out of range for a Date"))
            })?),
            Kind::Time => Value::Time(ms.rem_euclid(MS_PER_DAY) as i32),
            Kind::Unix => Value::Int64(match self.precision {
                Precision::Seconds => ms.div_euclid(1000),
                Precision::Milliseconds => ms,
                Precision::Microseconds => ms.saturating_mul(1000),
                Precision::Nanoseconds => ms.saturating_mul(1_000_000),
            }),
            Kind::String => {
                let format = self.format.as_ref().ok_or_else(|| {
                    TransformError::record(NAME, "converting to a string needs `format`")
                })?;
                Value::String(
                    format_millis(format, ms).map_err(|e| TransformError::record(NAME, e))?,
                )
            }
        })
    }

    /// Converts one value whose representation is `kind`; null stays null.
    fn convert(&self, kind: Kind, value: &Value) -> Result<Value, TransformError> {
        if value.is_null() {
            return Ok(Value::Null);
        }
        self.target_value(self.to_millis(kind, value)?)
    }

    /// The representation of a schemaless value, by its type.
    fn infer(&self, value: &Value) -> Result<Kind, TransformError> {
        match value {
            Value::Timestamp(_) => Ok(Kind::Timestamp),
            Value::Date(_) => Ok(Kind::Date),
            Value::Time(_) => Ok(Kind::Time),
            Value::Int8(_) | Value::Int16(_) | Value::Int32(_) | Value::Int64(_) => Ok(Kind::Unix),
            Value::String(_) => Ok(Kind::String),
            other => Err(wrong_type(
                NAME,
                self.what(),
                other,
                "a Timestamp, Date, Time, integer (unix) or string",
            )),
        }
    }

    fn kind_of_schema(&self, schema: &Schema) -> Result<Kind, TransformError> {
        Kind::of_schema(schema).ok_or_else(|| TransformError::WrongType {
            transform: NAME,
            what: format!("the schema of {}", self.what()),
            found: super::part::article(&schema.describe()),
            expected: "Timestamp, Date, Time, int64 (unix) or string".to_owned(),
        })
    }
}

impl Transform for TimestampConverter {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let (schema, value) = self.side.take(&mut record);
        let (schema, value) = match (schema, self.field.is_empty()) {
            (Some(schema), true) => {
                let kind = self.kind_of_schema(&schema)?;
                let value = self.convert(kind, &value)?;
                let out = self
                    .schemas
                    .get_or_try(&schema, |s| Ok(self.target.schema(s.optional)))?;
                (Some(out), value)
            }
            (None, true) => {
                let value = if value.is_null() {
                    Value::Null
                } else {
                    self.convert(self.infer(&value)?, &value)?
                };
                (None, value)
            }
            (Some(schema), false) => {
                if value.is_null() {
                    // Kafka Connect passes a null struct through unchanged.
                    (Some(schema), value)
                } else {
                    let data = require_struct(NAME, self.side, &schema, value)?;
                    let Some(field) = schema.field(&self.field) else {
                        return Err(TransformError::MissingField {
                            transform: NAME,
                            field: self.field.clone(),
                            part: self.side.name(),
                            schema: " schema",
                        });
                    };
                    let kind = self.kind_of_schema(&field.schema)?;
                    let out_schema = self.schemas.get_or_try(&schema, |s| {
                        let fields = s
                            .fields
                            .iter()
                            .map(|f| {
                                let schema: SchemaRef = if f.name == self.field {
                                    Arc::new(self.target.schema(f.schema.optional))
                                } else {
                                    f.schema.clone()
                                };
                                (f.name.clone(), schema)
                            })
                            .collect();
                        Ok(struct_like(s, fields))
                    })?;
                    let mut out = Struct::with_capacity(data.len());
                    for (name, v) in data.iter() {
                        if name == self.field {
                            out.push(name.to_owned(), self.convert(kind, v)?);
                        } else {
                            out.push(name.to_owned(), v.clone());
                        }
                    }
                    (Some(out_schema), Value::Struct(out))
                }
            }
            (None, false) => {
                if value.is_null() {
                    (None, value)
                } else {
                    let mut entries = require_map(NAME, self.side, value)?;
                    let current = super::part::map_get(&entries, &self.field).cloned();
                    if let Some(v) = current.filter(|v| !v.is_null()) {
                        let converted = self.convert(self.infer(&v)?, &v)?;
                        map_put(&mut entries, &self.field, converted);
                    }
                    (None, Value::Map(entries))
                }
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let field = p.string_or("field", "");
    let target = p
        .one_of(
            "target.type",
            &["string", "unix", "Date", "Time", "Timestamp"],
            None,
        )
        .and_then(|t| Kind::from_name(&t));
    let format = JavaFormat::from_prop(p, "format", None);
    let precision = p
        .one_of(
            "unix.precision",
            &["seconds", "milliseconds", "microseconds", "nanoseconds"],
            Some("milliseconds"),
        )
        .map(|s| match s.as_str() {
            "seconds" => Precision::Seconds,
            "microseconds" => Precision::Microseconds,
            "nanoseconds" => Precision::Nanoseconds,
            _ => Precision::Milliseconds,
        });
    if target == Some(Kind::String) && p.string("format").is_none_or(|f| f.is_empty()) {
        p.error("format", "a format is required when target.type is string");
    }
    Some(Box::new(TimestampConverter {
        side,
        field,
        target: target?,
        format,
        precision: precision?,
        schemas: SchemaCache::default(),
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};
    use super::*;

    const TS: i64 = 1_700_000_000_123; // 2023-11-14T22:13:20.123Z

    #[test]
    fn java_patterns_translate() {
        let f = JavaFormat::parse("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").unwrap();
        assert_eq!(format_millis(&f, TS).unwrap(), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_millis(&f, "2023-11-14T22:13:20.123Z").unwrap(), TS);
        let d = JavaFormat::parse("dd/MM/yy").unwrap();
        assert_eq!(format_millis(&d, TS).unwrap(), "14/11/23");
        assert_eq!(parse_millis(&d, "14/11/23").unwrap(), 1_699_920_000_000);
        assert!(JavaFormat::parse("yyyy 'open").is_err());
        assert!(JavaFormat::parse("YYYY").is_err());
    }

    #[test]
    fn whole_value_with_schema_converts_and_keeps_optional() {
        let chain = chain(
            json!({"type": "TimestampConverter$Value", "target.type": "string", "format": "yyyy-MM-dd HH:mm"}),
        );
        let out = apply(
            &chain,
            record(Some(Arc::new(Schema::timestamp())), Value::Timestamp(TS)),
        );
        assert_eq!(out.value, Value::from("2023-11-14 22:13"));
        assert_eq!(*out.value_schema.unwrap(), Schema::string());
        let out = apply(
            &chain,
            record(Some(Arc::new(Schema::timestamp().optional())), Value::Null),
        );
        assert_eq!(out.value, Value::Null);
        assert_eq!(*out.value_schema.unwrap(), Schema::string().optional());
    }

    #[test]
    fn struct_field_unix_seconds_to_timestamp_and_date() {
        let schema = Arc::new(
            Schema::struct_builder()
                .name("shop.Order")
                .field("id", Schema::int32())
                .field("at", Schema::int64())
                .build(),
        );
        let value = Value::Struct(Struct::new().with("id", 1i32).with("at", 1_700_000_000i64));
        let chain = chain(
            json!({"type": "TimestampConverter$Value", "field": "at", "target.type": "Timestamp", "unix.precision": "seconds"}),
        );
        let out = apply(&chain, record(Some(schema.clone()), value.clone()));
        assert_eq!(
            out.value,
            Value::Struct(
                Struct::new()
                    .with("id", 1i32)
                    .with("at", Value::Timestamp(1_700_000_000_000))
            )
        );
        let out_schema = out.value_schema.unwrap();
        assert_eq!(*out_schema.field("at").unwrap().schema, Schema::timestamp());
        assert_eq!(out_schema.name.as_deref(), Some("shop.Order"));
        let dates = super::super::testing::chain(
            json!({"type": "TimestampConverter$Value", "field": "at", "target.type": "Date", "unix.precision": "seconds"}),
        );
        let out = apply(&dates, record(Some(schema.clone()), value));
        assert_eq!(
            out.value.as_struct().unwrap().get("at"),
            Some(&Value::Date(19675))
        );
        let bad = Value::Struct(Struct::new().with("id", 1i32).with("at", "x"));
        let missing = super::super::testing::chain(
            json!({"type": "TimestampConverter$Value", "field": "nope", "target.type": "Date"}),
        );
        assert_eq!(
            apply_err(&missing, record(Some(schema), bad)),
            "TimestampConverter: field `nope` is not in the value schema"
        );
    }

    #[test]
    fn schemaless_infers_the_input_type() {
        let chain = chain(
            json!({"type": "TimestampConverter$Key", "field": "at", "target.type": "unix", "format": "yyyy-MM-dd"}),
        );
        let key = map(&[("at", Value::from("2023-11-14")), ("n", Value::from(1i32))]);
        let out = apply(&chain, record(None, Value::Null).with_key(None, key));
        assert_eq!(
            out.key,
            map(&[
                ("at", Value::Int64(1_699_920_000_000)),
                ("n", Value::from(1i32))
            ])
        );
        let time = super::super::testing::chain(
            json!({"type": "TimestampConverter$Value", "target.type": "Time"}),
        );
        let out = apply(&time, record(None, Value::Int64(TS)));
        assert_eq!(out.value, Value::Time(80_000_123));
        assert_eq!(out.value_schema, None);
        assert_eq!(
            apply_err(&time, record(None, Value::from(true))),
            "TimestampConverter: the value is a boolean; expected a Timestamp, Date, Time, integer (unix) or string"
        );
        let bad = map(&[("at", Value::from("14.11.2023"))]);
        let err = apply_err(&chain, record(None, Value::Null).with_key(None, bad));
        assert!(
            err.starts_with(
                "TimestampConverter: cannot convert field `at` \"14.11.2023\" to a timestamp"
            ),
            "{err}"
        );
    }

    #[test]
    fn config_errors_name_the_fields() {
        let errors = config_errors(
            json!({"type": "TimestampConverter$Value", "target.type": "string", "unix.precision": "days"}),
        );
        let fields: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            fields,
            [
                "transforms.t.unix.precision: expected one of seconds, milliseconds, microseconds, nanoseconds, got `days`",
                "transforms.t.format: a format is required when target.type is string",
            ]
        );
        let errors = config_errors(json!({"type": "TimestampConverter$Value"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.target.type: missing required field; expected one of string, unix, Date, Time, Timestamp"
        );
    }
}
