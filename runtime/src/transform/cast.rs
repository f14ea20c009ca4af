//! Cast: converts primitive fields (or the whole key or value) to another primitive type, as
//! Kafka Connect's Cast: `spec: "id:int64,price:float64"` or `spec: string` for the whole value.
//! Logical types may be cast too: Decimal to numbers or text, Date/Time/Timestamp to their
//! milliseconds or ISO 8601 text. Structs, arrays and maps cannot be cast.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::DateTime;
use sluice_connector_api::{Schema, SchemaRef, SchemaType, Struct, Value};

use super::cache::SchemaCache;
use super::part::{
    Side, article, map_get, map_put, require_map, require_struct, struct_like, wrong_type,
};
use super::props::Props;
use super::{Transform, TransformError, TransformRecord};

const NAME: &str = "Cast";
const TARGETS: &[&str] = &[
    "int8", "int16", "int32", "int64", "float32", "float64", "boolean", "string",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Boolean,
    String,
}

impl Target {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            "float32" => Self::Float32,
            "float64" => Self::Float64,
            "boolean" => Self::Boolean,
            "string" => Self::String,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        TARGETS[self as usize]
    }

    fn schema(self, optional: bool) -> Schema {
        let schema = match self {
            Self::Int8 => Schema::int8(),
            Self::Int16 => Schema::int16(),
            Self::Int32 => Schema::int32(),
            Self::Int64 => Schema::int64(),
            Self::Float32 => Schema::float32(),
            Self::Float64 => Schema::float64(),
            Self::Boolean => Schema::boolean(),
            Self::String => Schema::string(),
        };
        if optional { schema.optional() } else { schema }
    }
}

/// Java's `Double.toString`: `1.0`, `0.5`, `1.0E7`.
fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let abs = v.abs();
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let s = v.to_string();
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let s = format!("{v:E}");
        match s.split_once('E') {
            Some((mantissa, exp)) if !mantissa.contains('.') => format!("{mantissa}.0E{exp}"),
            _ => s,
        }
    }
}

/// A number as f64, for casts to floats and between logical and numeric types.
fn as_f64(value: &Value) -> Option<f64> {
    Some(match value {
        Value::Float32(v) => f64::from(*v),
        Value::Float64(v) => *v,
        Value::Boolean(b) => f64::from(u8::from(*b)),
        Value::Decimal(d) => d.to_string().parse().ok()?,
        other => millis_or_int(other)? as f64,
    })
}

/// Integers, and logical dates and times as milliseconds (Java's `Date.getTime()`).
fn millis_or_int(value: &Value) -> Option<i64> {
    match value {
        Value::Date(days) => Some(i64::from(*days) * 86_400_000),
        Value::Time(ms) => Some(i64::from(*ms)),
        Value::Timestamp(ms) => Some(*ms),
        Value::Boolean(b) => Some(i64::from(*b)),
        other => other.as_i64(),
    }
}

fn iso_text(value: &Value) -> Option<String> {
    let (ms, format) = match value {
        Value::Date(days) => (i64::from(*days) * 86_400_000, "%Y-%m-%d"),
        Value::Time(ms) => (i64::from(*ms), "%H:%M:%S%.3fZ"),
        Value::Timestamp(ms) => (*ms, "%Y-%m-%dT%H:%M:%S%.3fZ"),
        _ => return None,
    };
    DateTime::from_timestamp_millis(ms).map(|t| t.format(format).to_string())
}

/// Casts one value; `what` names it in errors.
fn cast(value: &Value, target: Target, what: &dyn Fn() -> String) -> Result<Value, TransformError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if matches!(value, Value::Struct(_) | Value::Array(_) | Value::Map(_)) {
        return Err(wrong_type(NAME, what(), value, "a primitive"));
    }
    if let Value::Bytes(_) = value
        && target != Target::String
    {
        return Err(wrong_type(
            NAME,
            what(),
            value,
            "a number, boolean, string or logical type (bytes only cast to string)",
        ));
    }
    let failed = |reason: &str| TransformError::Convert {
        transform: NAME,
        what: what(),
        value: value.to_string(),
        target: target.name().to_owned(),
        reason: reason.to_owned(),
    };
    // Integer targets: integers narrow by wrapping and floats truncate, as Java's casts.
    let integer = || -> Result<i64, TransformError> {
        match value {
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| failed("not an integer")),
            Value::Float32(_) | Value::Float64(_) | Value::Decimal(_) => as_f64(value)
                .map(|f| f as i64)
                .ok_or_else(|| failed("not a number")),
            other => millis_or_int(other).ok_or_else(|| failed("not a number")),
        }
    };
    let float = || -> Result<f64, TransformError> {
        match value {
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| failed("not a number")),
            other => as_f64(other).ok_or_else(|| failed("not a number")),
        }
    };
    Ok(match target {
        Target::Int8 => Value::Int8(match value {
            Value::String(s) => s.trim().parse().map_err(|_| failed("not an int8"))?,
            _ => integer()? as i8,
        }),
        Target::Int16 => Value::Int16(match value {
            Value::String(s) => s.trim().parse().map_err(|_| failed("not an int16"))?,
            _ => integer()? as i16,
        }),
        Target::Int32 => Value::Int32(match value {
            Value::String(s) => s.trim().parse().map_err(|_| failed("not an int32"))?,
            _ => integer()? as i32,
        }),
        Target::Int64 => Value::Int64(integer()?),
        Target::Float32 => Value::Float32(float()? as f32),
        Target::Float64 => Value::Float64(float()?),
        Target::Boolean => Value::Boolean(match value {
            // Java's Boolean.parseBoolean: "true" in any case, everything else false.
            Value::String(s) => s.trim().eq_ignore_ascii_case("true"),
            Value::Boolean(b) => *b,
            other => as_f64(other).ok_or_else(|| failed("not a number"))? != 0.0,
        }),
        Target::String => Value::String(match value {
            Value::Float32(v) => java_double(f64::from(*v)),
            Value::Float64(v) => java_double(*v),
            Value::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
            other => iso_text(other).unwrap_or_else(|| other.to_string()),
        }),
    })
}

/// The schema kinds Cast reads: primitives and the logical types on them.
fn castable(schema: &Schema) -> bool {
    !matches!(
        schema.kind,
        SchemaType::Struct | SchemaType::Array | SchemaType::Map
    )
}

enum Spec {
    Whole(Target),
    Fields(HashMap<String, Target>),
}

struct Cast {
    side: Side,
    spec: Spec,
    schemas: SchemaCache,
}

impl Cast {
    fn check_schema(
        &self,
        schema: &Schema,
        what: &dyn Fn() -> String,
    ) -> Result<(), TransformError> {
        if castable(schema) {
            Ok(())
        } else {
            Err(TransformError::WrongType {
                transform: NAME,
                what: what(),
                found: article(&schema.describe()),
                expected: "a primitive".to_owned(),
            })
        }
    }

    fn cast_schema(&self, schema: &Schema, target: Target) -> Result<Schema, TransformError> {
        let mut out = target.schema(schema.optional);
        if let Some(default) = &schema.default {
            out.default = Some(cast(default, target, &|| "the default".to_owned())?);
        }
        Ok(out)
    }
}

impl Transform for Cast {
    fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        let (schema, value) = self.side.take(&mut record);
        let part = || format!("the {}", self.side.name());
        let (schema, value) = match (&self.spec, schema) {
            (Spec::Whole(target), Some(schema)) => {
                self.check_schema(&schema, &part)?;
                let out = self
                    .schemas
                    .get_or_try(&schema, |s| self.cast_schema(s, *target))?;
                (Some(out), cast(&value, *target, &part)?)
            }
            (Spec::Whole(target), None) => (None, cast(&value, *target, &part)?),
            (Spec::Fields(fields), Some(schema)) => {
                if value.is_null() {
                    (Some(schema), value)
                } else {
                    let data = require_struct(NAME, self.side, &schema, value)?;
                    let out_schema = self.schemas.get_or_try(&schema, |s| {
                        let mut out: Vec<(String, SchemaRef)> = Vec::with_capacity(s.fields.len());
                        for f in &s.fields {
                            let schema = match fields.get(&f.name) {
                                Some(target) => {
                                    self.check_schema(&f.schema, &|| {
                                        format!("field `{}`", f.name)
                                    })?;
                                    Arc::new(self.cast_schema(&f.schema, *target)?)
                                }
                                None => f.schema.clone(),
                            };
                            out.push((f.name.clone(), schema));
                        }
                        Ok(struct_like(s, out))
                    })?;
                    let mut out = Struct::with_capacity(data.len());
                    for (name, v) in data.iter() {
                        match fields.get(name) {
                            Some(target) => out.push(
                                name.to_owned(),
                                cast(v, *target, &|| format!("field `{name}`"))?,
                            ),
                            None => out.push(name.to_owned(), v.clone()),
                        }
                    }
                    (Some(out_schema), Value::Struct(out))
                }
            }
            (Spec::Fields(_), None) if value.is_null() => (None, value),
            (Spec::Fields(fields), None) => {
                let mut entries = require_map(NAME, self.side, value)?;
                for (name, target) in fields {
                    if let Some(v) = map_get(&entries, name) {
                        let casted = cast(v, *target, &|| format!("field `{name}`"))?;
                        map_put(&mut entries, name, casted);
                    }
                }
                (None, Value::Map(entries))
            }
        };
        self.side.set(&mut record, schema, value);
        Ok(Some(record))
    }
}

pub(crate) fn build(p: &Props, side: Side) -> Option<Box<dyn Transform>> {
    let items = p.required_list("spec")?;
    let unknown = |t: &str| format!("unknown type `{t}`; expected one of {}", TARGETS.join(", "));
    if let [only] = items.as_slice()
        && !only.contains(':')
    {
        let Some(target) = Target::parse(only) else {
            p.error("spec", unknown(only));
            return None;
        };
        return Some(Box::new(Cast {
            side,
            spec: Spec::Whole(target),
            schemas: SchemaCache::default(),
        }));
    }
    let mut fields = HashMap::new();
    let mut ok = true;
    for item in &items {
        match item.split_once(':') {
            Some((field, t)) if !field.trim().is_empty() => match Target::parse(t.trim()) {
                Some(target) => {
                    fields.insert(field.trim().to_owned(), target);
                }
                None => {
                    p.error("spec", format!("{} in `{item}`", unknown(t.trim())));
                    ok = false;
                }
            },
            _ => {
                p.error(
                    "spec",
                    format!(
                        "expected `field:type` pairs, or one type for the whole value; got `{item}`"
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then(|| {
        Box::new(Cast {
            side,
            spec: Spec::Fields(fields),
            schemas: SchemaCache::default(),
        }) as Box<dyn Transform>
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use sluice_connector_api::{Decimal, Schema, Struct, Value};

    use super::super::testing::{apply, apply_err, chain, config_errors, map, record};
    use super::java_double;

    #[test]
    fn casts_struct_fields_and_their_schemas() {
        let schema = Arc::new(
            Schema::struct_builder()
                .name("shop.Order")
                .field("id", Schema::string())
                .field("price", Schema::decimal(2))
                .field("qty", Schema::int32().optional())
                .field("at", Schema::timestamp())
                .field("note", Schema::string())
                .build(),
        );
        let value = Value::Struct(
            Struct::new()
                .with("id", "42")
                .with("price", Decimal::parse("12.50").unwrap())
                .with("qty", Value::Null)
                .with("at", Value::Timestamp(1_700_000_000_123))
                .with("note", "n"),
        );
        let chain = chain(
            json!({"type": "Cast$Value", "spec": "id:int64,price:float64,qty:string,at:string"}),
        );
        let out = apply(&chain, record(Some(schema), value));
        assert_eq!(
            out.value,
            Value::Struct(
                Struct::new()
                    .with("id", 42i64)
                    .with("price", 12.5f64)
                    .with("qty", Value::Null)
                    .with("at", "2023-11-14T22:13:20.123Z")
                    .with("note", "n")
            )
        );
        let s = out.value_schema.unwrap();
        assert_eq!(*s.field("id").unwrap().schema, Schema::int64());
        assert_eq!(*s.field("price").unwrap().schema, Schema::float64());
        assert_eq!(*s.field("qty").unwrap().schema, Schema::string().optional());
        assert_eq!(*s.field("note").unwrap().schema, Schema::string());
        assert_eq!(s.name.as_deref(), Some("shop.Order"));
        assert!(s.validate_value(&out.value).is_ok());
    }

    #[test]
    fn complex_fields_and_bad_numbers_fail_with_names() {
        let schema = Arc::new(
            Schema::struct_builder()
                .field(
                    "amount",
                    Schema::struct_builder().field("v", Schema::int32()).build(),
                )
                .field("n", Schema::string())
                .build(),
        );
        let value = Value::Struct(
            Struct::new()
                .with("amount", Struct::new().with("v", 1i32))
                .with("n", "x"),
        );
        let chain = chain(json!({"type": "Cast$Value", "spec": "amount:int32"}));
        assert_eq!(
            apply_err(&chain, record(Some(schema.clone()), value.clone())),
            "Cast: field `amount` is a struct; expected a primitive"
        );
        let chain = super::super::testing::chain(json!({"type": "Cast$Value", "spec": "n:int32"}));
        assert_eq!(
            apply_err(&chain, record(Some(schema), value)),
            "Cast: cannot convert field `n` \"x\" to int32: not an int32"
        );
    }

    #[test]
    fn casts_schemaless_maps_and_whole_values() {
        let chain = chain(
            json!({"type": "Cast$Key", "spec": ["a:boolean", "b:int8", "c:float32", "d:string"]}),
        );
        let key = map(&[
            ("a", Value::from("TRUE")),
            ("b", Value::from(300i32)),
            ("c", Value::from(true)),
            ("d", Value::from(1.0f64)),
            ("e", Value::from(1i32)),
        ]);
        let out = apply(&chain, record(None, Value::Null).with_key(None, key));
        assert_eq!(
            out.key,
            map(&[
                ("a", Value::from(true)),
                ("b", Value::Int8(44)), // wraps like Java's (byte)
                ("c", Value::Float32(1.0)),
                ("d", Value::from("1.0")),
                ("e", Value::from(1i32)),
            ])
        );
        let whole = super::super::testing::chain(json!({"type": "Cast$Value", "spec": "int64"}));
        let out = apply(
            &whole,
            record(
                Some(Arc::new(Schema::string().optional())),
                Value::from(" 12 "),
            ),
        );
        assert_eq!(out.value, Value::Int64(12));
        assert_eq!(*out.value_schema.unwrap(), Schema::int64().optional());
        let out = apply(&whole, record(None, Value::Float64(3.9)));
        assert_eq!(out.value, Value::Int64(3));
        assert_eq!(
            apply_err(&whole, record(None, map(&[]))),
            "Cast: the value is a map; expected a primitive"
        );
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(0.25), "0.25");
    }

    #[test]
    fn spec_errors_are_named() {
        let errors = config_errors(json!({"type": "Cast$Value", "spec": "a:int128,b"}));
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "transforms.t.spec: unknown type `int128`; expected one of int8, int16, int32, int64, float32, float64, boolean, string in `a:int128`",
                "transforms.t.spec: expected `field:type` pairs, or one type for the whole value; got `b`",
            ]
        );
        let errors = config_errors(json!({"type": "Cast$Value", "spec": "decimal"}));
        assert_eq!(errors[0].field, "transforms.t.spec");
        let errors = config_errors(json!({"type": "Cast$Value"}));
        assert_eq!(
            errors[0].to_string(),
            "transforms.t.spec: missing required field"
        );
    }
}
