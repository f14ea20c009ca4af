//! Reads a WASM transform's JSON output straight into a [`Value`] of the record's original
//! schema, without a JSON tree in between. The rules are those of reading `Value::to_plain_json`
//! text back: decimals from strings (or numbers) of the schema's scale, bytes from base64,
//! timestamps, dates and times from integers, structs from objects with every field the schema
//! requires and none it lacks. Anything else does not fit: the caller then reads the output
//! without a schema.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use sluice_connector_api::{Decimal, Schema, SchemaType, Struct, Value, logical};

/// `bytes` read as a value of `schema`; `None` when they are not JSON or do not fit it.
pub(super) fn fit(schema: &Schema, bytes: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Fit(schema).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

/// A seed that reads one value of its schema.
#[derive(Clone, Copy)]
struct Fit<'a>(&'a Schema);

impl<'de> DeserializeSeed<'de> for Fit<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

enum Number {
    Int(i64),
    Float(f64),
}

impl Fit<'_> {
    fn mismatch<E: de::Error>(self) -> E {
        E::custom(format_args!("does not fit {}", self.0.describe()))
    }

    fn decimal<E: de::Error>(self, text: &str) -> Result<Value, E> {
        let scale = self.0.decimal_scale().ok_or_else(|| self.mismatch())?;
        match Decimal::parse(text) {
            Some(d) if d.scale == scale => Ok(Value::Decimal(d)),
            _ => Err(self.mismatch()),
        }
    }

    fn number<E: de::Error>(self, n: Number) -> Result<Value, E> {
        let schema = self.0;
        if schema.is_logical(logical::DECIMAL) {
            return match n {
                Number::Int(i) => self.decimal(&i.to_string()),
                Number::Float(f) => self.decimal(
                    &serde_json::Number::from_f64(f)
                        .map_or_else(|| f.to_string(), |n| n.to_string()),
                ),
            };
        }
        let int = || match n {
            Number::Int(i) => Ok(i),
            Number::Float(_) => Err(self.mismatch()),
        };
        let float = match n {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        };
        if schema.is_logical(logical::TIMESTAMP) {
            return Ok(Value::Timestamp(int()?));
        }
        if schema.is_logical(logical::DATE) {
            return Ok(Value::Date(
                i32::try_from(int()?).map_err(|_| self.mismatch())?,
            ));
        }
        if schema.is_logical(logical::TIME) {
            return Ok(Value::Time(
                i32::try_from(int()?).map_err(|_| self.mismatch())?,
            ));
        }
        Ok(match schema.kind {
            SchemaType::Int8 => Value::Int8(i8::try_from(int()?).map_err(|_| self.mismatch())?),
            SchemaType::Int16 => Value::Int16(i16::try_from(int()?).map_err(|_| self.mismatch())?),
            SchemaType::Int32 => Value::Int32(i32::try_from(int()?).map_err(|_| self.mismatch())?),
            SchemaType::Int64 => Value::Int64(int()?),
            SchemaType::Float32 => Value::Float32(float as f32),
            SchemaType::Float64 => Value::Float64(float),
            _ => return Err(self.mismatch()),
        })
    }
}

impl<'de> Visitor<'de> for Fit<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of {}", self.0.describe())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        if self.0.optional {
            Ok(Value::Null)
        } else {
            Err(self.mismatch())
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        if self.0.kind == SchemaType::Boolean {
            Ok(Value::Boolean(v))
        } else {
            Err(self.mismatch())
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.number(Number::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => self.number(Number::Int(i)),
            Err(_) => self.number(Number::Float(v as f64)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.number(Number::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        let schema = self.0;
        if schema.is_logical(logical::DECIMAL) {
            return self.decimal(v);
        }
        match schema.kind {
            SchemaType::String => Ok(Value::String(v.to_owned())),
            SchemaType::Bytes => base64::engine::general_purpose::STANDARD
                .decode(v)
                .map(Value::Bytes)
                .map_err(|_| self.mismatch()),
            _ => Err(self.mismatch()),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let schema = self.0;
        match schema.kind {
            SchemaType::Array => {
                let items = schema
                    .value_schema
                    .as_deref()
                    .ok_or_else(|| self.mismatch())?;
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element_seed(Fit(items))? {
                    out.push(item);
                }
                Ok(Value::Array(out))
            }
            SchemaType::Map => {
                let keys = schema
                    .key_schema
                    .as_deref()
                    .ok_or_else(|| self.mismatch())?;
                let values = schema
                    .value_schema
                    .as_deref()
                    .ok_or_else(|| self.mismatch())?;
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(pair) = seq.next_element_seed(Pair(keys, values))? {
                    out.push(pair);
                }
                Ok(Value::Map(out))
            }
            _ => Err(self.mismatch()),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let schema = self.0;
        match schema.kind {
            SchemaType::Struct => {
                let mut slots: Vec<Option<Value>> = vec![None; schema.fields.len()];
                fill_slots(schema, &mut slots, &mut map)?;
                finish_struct(schema, slots).ok_or_else(|| self.mismatch())
            }
            SchemaType::Map
                if schema
                    .key_schema
                    .as_deref()
                    .is_some_and(|k| k.kind == SchemaType::String) =>
            {
                let values = schema
                    .value_schema
                    .as_deref()
                    .ok_or_else(|| self.mismatch())?;
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(key) = map.next_key::<String>()? {
                    out.push((Value::String(key), map.next_value_seed(Fit(values))?));
                }
                Ok(Value::Map(out))
            }
            _ => Err(self.mismatch()),
        }
    }
}

/// Reads an object's members into `slots` (by the struct schema's field positions); a member the
/// schema lacks, or one that does not fit its field, is an error.
fn fill_slots<'de, A: MapAccess<'de>>(
    schema: &Schema,
    slots: &mut [Option<Value>],
    map: &mut A,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key::<Name<'de>>()? {
        let index = schema
            .fields
            .iter()
            .position(|f| f.name == *key.0)
            .ok_or_else(|| Fit(schema).mismatch::<A::Error>())?;
        slots[index] = Some(map.next_value_seed(Fit(&schema.fields[index].schema))?);
    }
    Ok(())
}

/// The struct of `schema` from its field values; `None` when a required one is missing.
fn finish_struct(schema: &Schema, slots: Vec<Option<Value>>) -> Option<Value> {
    let mut out = Struct::with_capacity(schema.fields.len());
    for (field, slot) in schema.fields.iter().zip(slots) {
        let value = match slot {
            Some(value) => value,
            None if field.schema.optional => Value::Null,
            None => return None,
        };
        out.push(field.name.clone(), value);
    }
    Some(Value::Struct(out))
}

/// A member name, borrowed from the input unless it had escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads an object's members into slots (see [`fill_slots`]).
struct Members<'a>(&'a Schema, &'a mut Vec<Option<Value>>);

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "members of {}", self.0.describe())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        fill_slots(self.0, self.1, &mut map)
    }
}

/// Appends a struct as a plugin receives it (the bytes of [`Value::to_plain_json_bytes`]) to
/// `out`, and returns where each top-level member (`"name":value`) sits in what it appended.
pub(super) fn encode_struct(s: &Struct, out: &mut Vec<u8>) -> Vec<Range<usize>> {
    let base = out.len();
    out.reserve(24 * s.len() + 2);
    let mut members = Vec::with_capacity(s.len());
    out.push(b'{');
    for (i, (name, value)) in s.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let start = out.len() - base;
        if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            // Nothing to escape (field names almost always): quoted as it is.
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        } else {
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, name);
            out.push(b':');
        }
        value.write_plain_json(out);
        members.push(start..out.len() - base);
    }
    out.push(b'}');
    members
}

/// `out`, a plugin's changed version of `sent` (the struct `original` as [`encode_struct`]
/// wrote it, its members at `members`), read as a value of `schema` like [`fit`] does, but
/// reading only what changed: the members `out` keeps byte for byte at its start and at its end
/// keep their original values, and only the run of members between them is parsed. `None`
/// when that run is not a list of whole members that fit the schema, or `original` does not
/// have the schema's fields in the schema's order (the caller then reads all of `out` with
/// [`fit`]).
pub(super) fn fit_changed(
    schema: &Schema,
    mut original: Struct,
    sent: &[u8],
    members: &[Range<usize>],
    out: &[u8],
) -> Option<Value> {
    let n = members.len();
    if schema.kind != SchemaType::Struct
        || original.len() != n
        || schema.fields.len() != n
        || !original
            .iter()
            .zip(&schema.fields)
            .all(|((name, _), field)| name == field.name)
    {
        return None;
    }
    let prefix = common_prefix(sent, out);
    let room = sent.len().min(out.len()) - prefix;
    let suffix = common_suffix(sent, out).min(room);
    if prefix == 0 || suffix == 0 {
        return None;
    }
    // Members 0..k are in the common start; members j..n, each with the comma before it, and
    // the closing brace are in the common end.
    let k = members.iter().take_while(|m| m.end <= prefix).count();
    let tail = sent.len() - suffix;
    let j = members.iter().position(|m| m.start > tail).unwrap_or(n);
    let cut_a = if k > 0 { members[k - 1].end } else { 1 };
    let cut_b = if j < n {
        members[j].start - 1
    } else {
        sent.len() - 1
    };
    let middle = out[cut_a..out.len() - (sent.len() - cut_b)].trim_ascii();
    // After kept start members a changed run begins with a comma; without kept start members
    // it may be empty only when no kept end member follows.
    let run = match middle.strip_prefix(b",") {
        Some(run) if k > 0 && !run.trim_ascii().is_empty() => run,
        None if middle.is_empty() && (k > 0 || j == n) => middle,
        None if k == 0 && !middle.is_empty() => middle,
        _ => return None,
    };
    let mut slots: Vec<Option<Value>> = vec![None; n];
    if !run.is_empty() {
        let mut object = Vec::with_capacity(run.len() + 2);
        object.push(b'{');
        object.extend_from_slice(run);
        object.push(b'}');
        let mut de = serde_json::Deserializer::from_slice(&object);
        Members(schema, &mut slots).deserialize(&mut de).ok()?;
        de.end().ok()?;
    }
    // Members of the run replace earlier ones (0..k) and what they stood for (k..j); later
    // kept members (j..n) win over them, as when reading the whole object.
    for (i, slot) in slots.into_iter().enumerate() {
        let new = match slot {
            Some(_) if i >= j => continue,
            Some(value) => value,
            None if i < k || i >= j => continue,
            None if schema.fields[i].schema.optional => Value::Null,
            None => return None,
        };
        *original.value_at_mut(i)? = new;
    }
    Some(Value::Struct(original))
}

/// How many bytes `a` and `b` share at their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let words = a.chunks_exact(8).zip(b.chunks_exact(8));
    let same = words.take_while(|(x, y)| x == y).count() * 8;
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// How many bytes `a` and `b` share at their end.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let words = a.rchunks_exact(8).zip(b.rchunks_exact(8));
    let same = words.take_while(|(x, y)| x == y).count() * 8;
    same + a[..a.len() - same]
        .iter()
        .rev()
        .zip(b[..b.len() - same].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// A `[key, value]` pair of a map whose keys are not strings.
struct Pair<'a>(&'a Schema, &'a Schema);

impl<'de> DeserializeSeed<'de> for Pair<'_> {
    type Value = (Value, Value);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Pair<'_> {
    type Value = (Value, Value);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [key, value] pair")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let missing = || de::Error::custom("a map entry needs a key and a value");
        let key = seq.next_element_seed(Fit(self.0))?.ok_or_else(missing)?;
        let value = seq.next_element_seed(Fit(self.1))?.ok_or_else(missing)?;
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a map entry has two elements"));
        }
        Ok((key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Schema {
        Schema::struct_builder()
            .field("id", Schema::int64())
            .field("name", Schema::string().optional())
            .field("amount", Schema::decimal(2))
            .field("at", Schema::timestamp())
            .field("raw", Schema::bytes().optional())
            .field(
                "tags",
                Schema::map(Schema::string(), Schema::int32()).optional(),
            )
            .build()
    }

    fn fit_json(schema: &Schema, json: serde_json::Value) -> Option<Value> {
        fit(schema, json.to_string().as_bytes())
    }

    #[test]
    fn plain_json_of_a_value_fits_its_schema_again() {
        let value = Value::Struct(
            Struct::new()
                .with("id", 7i64)
                .with("name", "ann")
                .with("amount", Value::Decimal(Decimal::parse("12.34").unwrap()))
                .with("at", Value::Timestamp(1_000))
                .with("raw", Value::Bytes(vec![0, 1, 255]))
                .with(
                    "tags",
                    Value::Map(vec![(Value::from("a"), Value::Int32(1))]),
                ),
        );
        let bytes = value.to_plain_json_bytes();
        assert_eq!(fit(&order(), &bytes), Some(value));
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let base = json!({"id": 1, "amount": "1.00", "at": 5});
        assert!(
            fit_json(&order(), base.clone()).is_some(),
            "optional fields may be absent"
        );
        for bad in [
            json!({"id": 1, "amount": "1.00", "at": 5, "extra": true}),
            json!({"amount": "1.00", "at": 5}),
            json!({"id": 1.5, "amount": "1.00", "at": 5}),
            json!({"id": 1, "amount": "1.0", "at": 5}),
            json!({"id": 1, "amount": "1.00", "at": "5"}),
            json!({"id": null, "amount": "1.00", "at": 5}),
            json!({"id": 1, "amount": "1.00", "at": 5, "raw": "***not base64"}),
            json!([1, 2]),
        ] {
            assert_eq!(fit_json(&order(), bad.clone()), None, "{bad}");
        }
        assert_eq!(fit(&order(), b"not json"), None);
        assert_eq!(
            fit(
                &order(),
                b"{\"id\":1,\"amount\":\"1.00\",\"at\":5} trailing"
            ),
            None
        );
    }

    fn row_schema() -> Schema {
        Schema::struct_builder()
            .field("id", Schema::int64())
            .field("name", Schema::string().optional())
            .field("amount", Schema::decimal(2))
            .field("at", Schema::timestamp())
            .build()
    }

    fn row() -> Struct {
        Struct::new()
            .with("id", 7i64)
            .with("name", "ann")
            .with("amount", Value::Decimal(Decimal::parse("12.34").unwrap()))
            .with("at", Value::Timestamp(1_000))
    }

    #[test]
    fn encode_struct_writes_plain_json_and_member_positions() {
        let mut bytes = b"before".to_vec();
        let members = encode_struct(&row(), &mut bytes);
        let bytes = bytes.split_off(6);
        assert_eq!(bytes, Value::Struct(row()).to_plain_json_bytes());
        let text = std::str::from_utf8(&bytes).unwrap();
        let members: Vec<&str> = members.into_iter().map(|m| &text[m]).collect();
        assert_eq!(
            members,
            [
                r#""id":7"#,
                r#""name":"ann""#,
                r#""amount":"12.34""#,
                r#""at":1000"#
            ]
        );
    }

    #[test]
    fn a_changed_struct_reads_only_what_changed_and_equals_a_full_read() {
        let mut sent = Vec::new();
        let members = encode_struct(&row(), &mut sent);
        let fast = [
            r#"{"id":7,"name":"***","amount":"12.34","at":1000}"#,
            r#"{"id":8,"name":"ann","amount":"12.34","at":1000}"#,
            r#"{"id":7,"name":"ann","amount":"12.34","at":2000}"#,
            r#"{"id":7,"amount":"12.34","at":1000}"#,
            r#"{"id":7,"name":null,"amount":"12.34","at":1000}"#,
            r#"{"id":7,"name":"ann","at":1000, "amount" : "99.00" }"#,
            r#"{"name":"bob","id":7,"amount":"12.34","at":1000}"#,
        ];
        let other = [
            // Does not fit: a required member removed, an unknown one added, a wrong type.
            r#"{"id":7,"name":"ann","at":1000}"#,
            r#"{"id":7,"name":"ann","amount":"12.34","at":1000,"x":1}"#,
            r#"{"id":7,"name":"ann","amount":"12.345","at":1000}"#,
            // Not JSON: commas around the change.
            r#"{"id":7,,"amount":"12.34","at":1000}"#,
            r#"{"id":7,"name":"a",,"amount":"12.34","at":1000}"#,
            r#"{,"name":"ann","amount":"12.34","at":1000}"#,
            r#"{"id":7,"name":"ann","amount":"12.34","at":1000,}"#,
            r#"{"id":7"name":"ann","amount":"12.34","at":1000}"#,
            // A later member wins, as in a full read.
            r#"{"id":7,"name":"ann","amount":"12.34","at":1000,"id":9}"#,
            r#"{"id":7,"id":9,"name":"ann","amount":"12.34","at":1000}"#,
            r#"{"id":7,"name":"ann","amount":"12.34","at":1000} "#,
            r#"[1]"#,
            r#"{}"#,
        ];
        for (out, must_be_fast) in fast
            .iter()
            .map(|o| (o, true))
            .chain(other.iter().map(|o| (o, false)))
        {
            let quick = fit_changed(&row_schema(), row(), &sent, &members, out.as_bytes());
            let full = fit(&row_schema(), out.as_bytes());
            if must_be_fast {
                assert!(quick.is_some(), "{out}");
            }
            assert_eq!(quick.clone().or_else(|| full.clone()), full, "{out}");
            if let Some(quick) = quick {
                assert_eq!(Some(quick), full, "{out}");
            }
        }
        // A struct that does not have the schema's fields in order is read in full.
        let reordered = Struct::new().with("name", "ann").with("id", 7i64);
        let mut sent = Vec::new();
        let members = encode_struct(&reordered, &mut sent);
        let out = br#"{"name":"***","id":7}"#;
        assert_eq!(
            fit_changed(&row_schema(), reordered, &sent, &members, out),
            None
        );
    }

    #[test]
    fn common_ends_are_counted_in_words_and_bytes() {
        let a = b"0123456789abcdefXYZ";
        let b = b"0123456789abcdefQYZ";
        assert_eq!(common_prefix(a, b), 16);
        assert_eq!(common_suffix(a, b), 2);
        assert_eq!(common_prefix(a, a), a.len());
        assert_eq!(common_suffix(b"xx0123456789", b"0123456789"), 10);
        assert_eq!(common_prefix(b"", a), 0);
    }

    #[test]
    fn maps_with_other_keys_are_pairs() {
        let schema = Schema::map(Schema::int32(), Schema::string());
        assert_eq!(
            fit_json(&schema, json!([[1, "a"], [2, "b"]])),
            Some(Value::Map(vec![
                (Value::Int32(1), Value::from("a")),
                (Value::Int32(2), Value::from("b")),
            ]))
        );
        assert_eq!(fit_json(&schema, json!([[1, "a", 3]])), None);
        let small = Schema::int8();
        assert_eq!(fit_json(&small, json!(300)), None);
        assert_eq!(
            fit_json(&Schema::float32(), json!(2)),
            Some(Value::Float32(2.0))
        );
    }
}
