//! Values of Kafka Connect's data model, including logical values.

use std::fmt;
use std::sync::Arc;

use num_bigint::BigInt;

/// A value. Logical types have their own variants so that connectors do not juggle encodings;
/// converters map them to Kafka Connect's physical representation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    /// Entries in insertion order; keys need not be strings.
    Map(Vec<(Value, Value)>),
    Struct(Struct),
    /// Kafka Connect `Decimal`: arbitrary precision unscaled integer and a scale.
    Decimal(Decimal),
    /// Kafka Connect `Date`: days since 1970-01-01.
    Date(i32),
    /// Kafka Connect `Time`: milliseconds since midnight.
    Time(i32),
    /// Kafka Connect `Timestamp`: milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Boolean(_) => "boolean",
            Self::Int8(_) => "int8",
            Self::Int16(_) => "int16",
            Self::Int32(_) => "int32",
            Self::Int64(_) => "int64",
            Self::Float32(_) => "float",
            Self::Float64(_) => "double",
            Self::String(_) => "string",
            Self::Bytes(_) => "bytes",
            Self::Array(_) => "array",
            Self::Map(_) => "map",
            Self::Struct(_) => "struct",
            Self::Decimal(_) => "Decimal",
            Self::Date(_) => "Date",
            Self::Time(_) => "Time",
            Self::Timestamp(_) => "Timestamp",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any integer variant widened to i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::Int8(v) => Some(v.into()),
            Self::Int16(v) => Some(v.into()),
            Self::Int32(v) => Some(v.into()),
            Self::Int64(v) => Some(v),
            _ => None,
        }
    }

    /// A value read from plain JSON without a schema, as Kafka Connect's JsonConverter reads it
    /// with schemas off: objects become maps with string keys, integers Int64, other numbers
    /// Float64.
    pub fn from_plain_json(json: &serde_json::Value) -> Self {
        use serde_json::Value as Json;
        match json {
            Json::Null => Self::Null,
            Json::Bool(b) => Self::Boolean(*b),
            Json::Number(n) => n.as_i64().map_or_else(
                || Self::Float64(n.as_f64().unwrap_or(f64::NAN)),
                Self::Int64,
            ),
            Json::String(s) => Self::String(s.clone()),
            Json::Array(items) => Self::Array(items.iter().map(Self::from_plain_json).collect()),
            Json::Object(obj) => Self::Map(
                obj.iter()
                    .map(|(k, v)| (Self::String(k.clone()), Self::from_plain_json(v)))
                    .collect(),
            ),
        }
    }

    /// Plain JSON without a schema, as the JSON converter writes with schemas off: bytes as
    /// base64, decimals as their exact text, logical dates and times as their numbers.
    pub fn to_plain_json(&self) -> serde_json::Value {
        use base64::Engine as _;
        use serde_json::Value as Json;
        match self {
            Self::Null => Json::Null,
            Self::Boolean(v) => Json::Bool(*v),
            Self::Int8(_) | Self::Int16(_) | Self::Int32(_) | Self::Int64(_) => {
                Json::from(self.as_i64().unwrap_or_default())
            }
            Self::Date(v) | Self::Time(v) => Json::from(*v),
            Self::Timestamp(v) => Json::from(*v),
            Self::Float32(v) => {
                serde_json::Number::from_f64(f64::from(*v)).map_or(Json::Null, Json::Number)
            }
            Self::Float64(v) => serde_json::Number::from_f64(*v).map_or(Json::Null, Json::Number),
            Self::String(v) => Json::String(v.clone()),
            Self::Bytes(v) => Json::String(base64::engine::general_purpose::STANDARD.encode(v)),
            Self::Decimal(d) => Json::String(d.to_string()),
            Self::Array(items) => Json::Array(items.iter().map(Self::to_plain_json).collect()),
            Self::Map(entries) => {
                if entries.iter().all(|(k, _)| matches!(k, Self::String(_))) {
                    Json::Object(
                        entries
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_plain_json()))
                            .collect(),
                    )
                } else {
                    Json::Array(
                        entries
                            .iter()
                            .map(|(k, v)| Json::Array(vec![k.to_plain_json(), v.to_plain_json()]))
                            .collect(),
                    )
                }
            }
            Self::Struct(s) => Json::Object(
                s.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_plain_json()))
                    .collect(),
            ),
        }
    }

    /// The bytes of [`Self::to_plain_json`] written straight from the value, without building
    /// a JSON tree first (the same text, except that a map with repeated string keys keeps
    /// every entry).
    pub fn to_plain_json_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_plain_json(&mut out);
        out
    }

    /// Appends [`Self::to_plain_json_bytes`] to `out`.
    pub fn write_plain_json(&self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail: every value has a JSON form.
        let _ = serde_json::to_writer(out, &PlainJson(self));
    }

    pub fn as_struct(&self) -> Option<&Struct> {
        match self {
            Self::Struct(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// A plain rendering: strings unquoted, everything else as its natural text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Boolean(v) => write!(f, "{v}"),
            Self::Int8(v) => write!(f, "{v}"),
            Self::Int16(v) => write!(f, "{v}"),
            Self::Int32(v) | Self::Date(v) | Self::Time(v) => write!(f, "{v}"),
            Self::Int64(v) | Self::Timestamp(v) => write!(f, "{v}"),
            Self::Float32(v) => write!(f, "{v}"),
            Self::Float64(v) => write!(f, "{v}"),
            Self::String(v) => f.write_str(v),
            Self::Bytes(v) => write!(f, "<{} bytes>", v.len()),
            Self::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Self::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
            Self::Struct(s) => {
                f.write_str("Struct{")?;
                for (i, (k, v)) in s.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}={v}")?;
                }
                f.write_str("}")
            }
            Self::Decimal(d) => write!(f, "{d}"),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Self::$variant(v.into())
            }
        })*
    };
}

value_from!(
    bool => Boolean,
    i8 => Int8,
    i16 => Int16,
    i32 => Int32,
    i64 => Int64,
    f32 => Float32,
    f64 => Float64,
    String => String,
    &str => String,
    Vec<u8> => Bytes,
    Struct => Struct,
    Decimal => Decimal,
);

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// The name of a struct field: a `&'static str` or a shared string, so that records built with
/// fixed names (or names shared by every row of a table) cost no allocation per field.
#[derive(Clone)]
pub enum FieldName {
    Static(&'static str),
    Shared(Arc<str>),
}

impl FieldName {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Shared(s) => s,
        }
    }
}

impl std::ops::Deref for FieldName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for FieldName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for FieldName {}

impl PartialEq<str> for FieldName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for FieldName {
    fn from(s: &'static str) -> Self {
        Self::Static(s)
    }
}

impl From<String> for FieldName {
    fn from(s: String) -> Self {
        Self::Shared(s.into())
    }
}

impl From<&String> for FieldName {
    fn from(s: &String) -> Self {
        Self::Shared(s.as_str().into())
    }
}

impl From<Arc<str>> for FieldName {
    fn from(s: Arc<str>) -> Self {
        Self::Shared(s)
    }
}

impl From<&FieldName> for FieldName {
    fn from(s: &FieldName) -> Self {
        s.clone()
    }
}

/// A struct value: named fields in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Struct {
    fields: Vec<(FieldName, Value)>,
}

impl Struct {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a field, builder style.
    pub fn with(mut self, name: impl Into<FieldName>, value: impl Into<Value>) -> Self {
        self.put(name, value);
        self
    }

    /// Sets a field, replacing an existing one of the same name in place.
    pub fn put(&mut self, name: impl Into<FieldName>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name, value)),
        }
    }

    /// An empty struct with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: Vec::with_capacity(n),
        }
    }

    /// Appends a field without looking for an existing one of the same name: for builders that
    /// know their names are unique (a row built from its columns), where `put` would compare
    /// every name with every other.
    pub fn push(&mut self, name: impl Into<FieldName>, value: impl Into<Value>) {
        self.fields.push((name.into(), value.into()));
    }

    /// [`push`](Self::push), builder style.
    pub fn and(mut self, name: impl Into<FieldName>, value: impl Into<Value>) -> Self {
        self.push(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| v)
    }

    /// The field at position `i`, in insertion order.
    pub fn field_at(&self, i: usize) -> Option<(&str, &Value)> {
        self.fields.get(i).map(|(n, v)| (n.as_str(), v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The value of the field at position `i`, in insertion order, to change in place.
    pub fn value_at_mut(&mut self, i: usize) -> Option<&mut Value> {
        self.fields.get_mut(i).map(|(_, v)| v)
    }
}

impl FromIterator<(String, Value)> for Struct {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Self {
        let mut s = Self::new();
        for (k, v) in iter {
            s.put(k, v);
        }
        s
    }
}

/// An arbitrary-precision decimal: `unscaled * 10^-scale`.
///
/// Values from outside (converters, sources) are checked against [`Decimal::MAX_SCALE`] and
/// [`Decimal::MAX_UNSCALED_BYTES`] with [`Decimal::check`]: written out in full, a scale of
/// 2147483647 is two gigabytes of zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub unscaled: BigInt,
    pub scale: i32,
}

/// A Decimal out of the bounds Sluice handles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error(
        "Decimal scale {0} is out of range: at most {max} digits either side of the point",
        max = Decimal::MAX_SCALE
    )]
    Scale(i64),
    #[error(
        "Decimal unscaled value of {0} bytes is larger than the {max} bytes allowed",
        max = Decimal::MAX_UNSCALED_BYTES
    )]
    Size(usize),
}

impl Decimal {
    /// Largest scale, either way: PostgreSQL's bound for `numeric(p, s)` (-1000..=1000), which
    /// keeps a Decimal's text at most a thousand zeros longer than its digits.
    pub const MAX_SCALE: i32 = 1000;
    /// Largest unscaled value, in two's-complement bytes (about 157,000 digits: room for
    /// PostgreSQL's largest `numeric`, 131,072 digits before the point and 16,383 after).
    pub const MAX_UNSCALED_BYTES: usize = 64 * 1024;

    /// Checks a scale against [`Decimal::MAX_SCALE`].
    pub fn check_scale(scale: i64) -> Result<(), DecimalError> {
        if scale.unsigned_abs() > u64::from(Self::MAX_SCALE.unsigned_abs()) {
            return Err(DecimalError::Scale(scale));
        }
        Ok(())
    }

    /// Checks the scale and the size of the unscaled value.
    pub fn check(&self) -> Result<(), DecimalError> {
        Self::check_scale(i64::from(self.scale))?;
        let bytes = self.unscaled.bits().div_ceil(8);
        if bytes > Self::MAX_UNSCALED_BYTES as u64 {
            return Err(DecimalError::Size(
                usize::try_from(bytes).unwrap_or(usize::MAX),
            ));
        }
        Ok(())
    }

    /// A Decimal from Kafka Connect's encoding (big-endian two's-complement bytes), checked.
    pub fn try_from_bytes(bytes: &[u8], scale: i32) -> Result<Self, DecimalError> {
        Self::check_scale(i64::from(scale))?;
        if bytes.len() > Self::MAX_UNSCALED_BYTES {
            return Err(DecimalError::Size(bytes.len()));
        }
        Ok(Self::from_bytes(bytes, scale))
    }

    pub fn new(unscaled: BigInt, scale: i32) -> Self {
        Self { unscaled, scale }
    }

    /// Parses `-12.345` style text; the scale is the number of digits after the point.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (int_part, frac_part) = text.split_once('.').unwrap_or((text, ""));
        if frac_part.starts_with(['-', '+']) {
            return None;
        }
        let digits = format!("{int_part}{frac_part}");
        // Most decimals fit 64 bits: those skip the arbitrary-precision parse.
        let unscaled = match digits.parse::<i64>() {
            Ok(small) => BigInt::from(small),
            Err(_) => digits.parse().ok()?,
        };
        Some(Self {
            unscaled,
            scale: i32::try_from(frac_part.len()).ok()?,
        })
    }

    /// The unscaled value as big-endian two's-complement bytes (Kafka Connect's encoding).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.unscaled.to_signed_bytes_be()
    }

    pub fn from_bytes(bytes: &[u8], scale: i32) -> Self {
        Self {
            unscaled: BigInt::from_signed_bytes_be(bytes),
            scale,
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.unscaled.magnitude();
        // Most decimals fit 64 bits: those skip the arbitrary-precision conversion.
        let mut words = magnitude.iter_u64_digits();
        let digits = match (words.next(), words.next()) {
            (None, _) => String::from("0"),
            (Some(word), None) => word.to_string(),
            _ => magnitude.to_string(),
        };
        if self.unscaled.sign() == num_bigint::Sign::Minus {
            f.write_str("-")?;
        }
        // Out of bounds (unchecked), the scale goes in an exponent, as Java's BigDecimal writes
        // it: `1E-2147483647` is exact and short, where plain text would be gigabytes.
        if self.scale.unsigned_abs() > Self::MAX_SCALE.unsigned_abs() {
            return write!(f, "{digits}E{:+}", -i64::from(self.scale));
        }
        if self.scale <= 0 {
            f.write_str(&digits)?;
            if digits != "0" {
                for _ in 0..self.scale.unsigned_abs() {
                    f.write_str("0")?;
                }
            }
            return Ok(());
        }
        let scale = self.scale as usize;
        if digits.len() <= scale {
            f.write_str("0.")?;
            for _ in digits.len()..scale {
                f.write_str("0")?;
            }
            return f.write_str(&digits);
        }
        let (int_part, frac_part) = digits.split_at(digits.len() - scale);
        f.write_str(int_part)?;
        f.write_str(".")?;
        f.write_str(frac_part)
    }
}

/// Serializes a [`Value`] as [`Value::to_plain_json`] renders it.
struct PlainJson<'a>(&'a Value);

impl serde::Serialize for PlainJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(v) => serializer.serialize_bool(*v),
            Value::Int8(v) => serializer.serialize_i8(*v),
            Value::Int16(v) => serializer.serialize_i16(*v),
            Value::Int32(v) | Value::Date(v) | Value::Time(v) => serializer.serialize_i32(*v),
            Value::Int64(v) | Value::Timestamp(v) => serializer.serialize_i64(*v),
            Value::Float32(v) => serializer.serialize_f64(f64::from(*v)),
            Value::Float64(v) => serializer.serialize_f64(*v),
            Value::String(v) => serializer.serialize_str(v),
            Value::Bytes(v) => {
                serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
            }
            Value::Decimal(d) => serializer.collect_str(d),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&PlainJson(item))?;
                }
                seq.end()
            }
            Value::Map(entries) if entries.iter().all(|(k, _)| matches!(k, Value::String(_))) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    if let Value::String(k) = k {
                        map.serialize_entry(k, &PlainJson(v))?;
                    }
                }
                map.end()
            }
            Value::Map(entries) => {
                let mut seq = serializer.serialize_seq(Some(entries.len()))?;
                for (k, v) in entries {
                    seq.serialize_element(&[PlainJson(k), PlainJson(v)])?;
                }
                seq.end()
            }
            Value::Struct(s) => {
                let mut map = serializer.serialize_map(Some(s.len()))?;
                for (k, v) in s.iter() {
                    map.serialize_entry(k, &PlainJson(v))?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_json_bytes_equal_the_json_tree_text() {
        use super::{Decimal, Struct, Value};
        let values = [
            Value::Null,
            Value::Boolean(true),
            Value::Int8(-3),
            Value::Int64(i64::MAX),
            Value::Float32(12.34),
            Value::Float64(f64::NAN),
            Value::Float64(1e300),
            Value::Float64(2.0),
            Value::from("quote \" back \\ ctl \u{1} é \u{2028}"),
            Value::Bytes(vec![0, 255, 7]),
            Value::Decimal(Decimal::parse("-12.340").unwrap()),
            Value::Timestamp(1_700_000_000_000),
            Value::Array(vec![Value::Int32(1), Value::Null]),
            Value::Map(vec![(Value::from("a"), Value::Int32(1))]),
            Value::Map(vec![(Value::Int32(1), Value::from("x"))]),
            Value::Struct(Struct::new().with("id", 7i64).with(
                "nested",
                Value::Struct(Struct::new().with("x", Value::Null)),
            )),
        ];
        for value in values {
            assert_eq!(
                String::from_utf8(value.to_plain_json_bytes()).unwrap(),
                value.to_plain_json().to_string(),
                "{value:?}"
            );
        }
    }

    use super::*;

    #[test]
    fn decimals_out_of_bounds_are_refused_and_render_short() {
        let huge = Decimal::new(BigInt::from(-12), i32::MAX);
        assert_eq!(huge.to_string(), "-12E-2147483647");
        assert_eq!(
            Decimal::new(BigInt::from(5), i32::MIN).to_string(),
            "5E+2147483648"
        );
        assert_eq!(huge.check(), Err(DecimalError::Scale(i64::from(i32::MAX))));
        assert_eq!(
            Decimal::try_from_bytes(&[1], -1001),
            Err(DecimalError::Scale(-1001))
        );
        assert!(Decimal::try_from_bytes(&[1], 1000).is_ok());
        assert_eq!(
            Decimal::try_from_bytes(&[1; Decimal::MAX_UNSCALED_BYTES + 1], 0),
            Err(DecimalError::Size(Decimal::MAX_UNSCALED_BYTES + 1))
        );
        assert_eq!(
            Decimal::new(BigInt::from(1), 1000).to_string().len(),
            1001 + 1
        );
    }

    #[test]
    fn decimal_round_trips_text_and_bytes() {
        for text in [
            "12.34",
            "-0.05",
            "100",
            "0.000",
            "-123456789012345678901234567890.1",
            "18446744073709551615",
            "18446744073709551616",
            "-0.0018446744073709551616",
            "1.8446744073709551615",
        ] {
            let d = Decimal::parse(text).unwrap();
            assert_eq!(d.to_string(), text);
            assert_eq!(Decimal::from_bytes(&d.to_bytes(), d.scale), d);
        }
        assert_eq!(
            Decimal::new(BigInt::from(1234), 2).to_bytes(),
            vec![0x04, 0xd2]
        );
        assert_eq!(Decimal::new(BigInt::from(-1), 0).to_bytes(), vec![0xff]);
        assert!(Decimal::parse("1.-2").is_none());
        assert!(Decimal::parse("abc").is_none());
        for (unscaled, scale, text) in [(5, -2, "500"), (0, -2, "0"), (-7, 3, "-0.007")] {
            assert_eq!(
                Decimal::new(BigInt::from(unscaled), scale).to_string(),
                text
            );
        }
    }

    #[test]
    fn struct_put_replaces_in_place() {
        let mut s = Struct::new().with("a", 1i32).with("b", "x");
        s.put("a", 2i32);
        assert_eq!(s.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(s.get("a"), Some(&Value::Int32(2)));
    }
}
