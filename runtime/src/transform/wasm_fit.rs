//! Reads a WASM transform's JSON output straight into a [`Value`] of the record's original
//! schema, without a JSON tree in between. The rules are those of reading `Value::to_plain_json`
//! text back: decimals from strings (or numbers) of the schema's scale, bytes from base64,
//! timestamps, dates and times from integers, structs from objects with every field the schema
//! requires and none it lacks. Anything else does not fit: the caller then reads the output
//! without a schema.

use std::fmt;

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
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let index = schema
                        .fields
                        .iter()
                        .position(|f| f.name == *key)
                        .ok_or_else(|| self.mismatch::<A::Error>())?;
                    slots[index] = Some(map.next_value_seed(Fit(&schema.fields[index].schema))?);
                }
                let mut out = Struct::with_capacity(schema.fields.len());
                for (field, slot) in schema.fields.iter().zip(slots) {
                    let value = match slot {
                        Some(value) => value,
                        None if field.schema.optional => Value::Null,
                        None => return Err(self.mismatch()),
                    };
                    out.push(field.name.clone(), value);
                }
                Ok(Value::Struct(out))
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
