//! Records as they cross the boundary: keys and values as schemaless JSON bytes (raw bytes stay
//! raw), headers as bytes, source partition/offset as JSON text.

use serde_json::Value as Json;
use sluice_connector_api::{Header, SinkRecord, SourceRecord, Value};

use crate::bindings::types;

/// A record as a plugin sees it (the WIT `record`).
pub type PluginRecord = types::Record;
/// A header as a plugin sees it (the WIT `header`).
pub type PluginHeader = types::Header;

/// The bytes a plugin receives for a key or value: none for null, bytes as they are, anything
/// else as schemaless JSON (what Kafka Connect's JsonConverter writes with schemas off).
pub fn encode_value(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Null => None,
        Value::Bytes(b) => Some(b.clone()),
        other => Some(other.to_plain_json_bytes()),
    }
}

/// A key or value a plugin returned: JSON is read as schemaless JSON; anything else is a UTF-8
/// string, or raw bytes.
pub fn decode_value(bytes: Option<&[u8]>) -> Value {
    let Some(bytes) = bytes else {
        return Value::Null;
    };
    match serde_json::from_slice::<Json>(bytes) {
        Ok(json) => Value::from_plain_json(&json),
        Err(_) => match std::str::from_utf8(bytes) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => Value::Bytes(bytes.to_vec()),
        },
    }
}

pub(crate) fn headers_in(headers: &[Header]) -> Vec<PluginHeader> {
    headers
        .iter()
        .map(|h| PluginHeader {
            key: h.key.clone(),
            value: h.value.clone(),
        })
        .collect()
}

pub(crate) fn headers_out(headers: Vec<PluginHeader>) -> Vec<Header> {
    headers
        .into_iter()
        .map(|h| Header {
            key: h.key,
            value: h.value,
        })
        .collect()
}

fn json_object(text: Option<&str>, what: &str) -> Result<serde_json::Map<String, Json>, String> {
    match text {
        None => Ok(serde_json::Map::new()),
        Some(text) => match serde_json::from_str(text) {
            Ok(Json::Object(map)) => Ok(map),
            _ => Err(format!("{what} must be a JSON object, got {text:?}")),
        },
    }
}

/// A record a source plugin returned.
pub(crate) fn source_record(record: PluginRecord) -> Result<SourceRecord, String> {
    let source_partition = json_object(record.source_partition.as_deref(), "source-partition")?;
    let source_offset = json_object(record.source_offset.as_deref(), "source-offset")?;
    if record.topic.is_empty() {
        return Err("a source record needs a topic".to_owned());
    }
    Ok(SourceRecord {
        key: decode_value(record.key.as_deref()),
        key_schema: None,
        value: decode_value(record.value.as_deref()),
        value_schema: None,
        topic: record.topic,
        partition: record.partition,
        headers: headers_out(record.headers),
        timestamp: record.timestamp,
        source_partition,
        source_offset,
    })
}

/// A consumed record as a sink plugin receives it.
pub(crate) fn sink_record(record: &SinkRecord) -> PluginRecord {
    PluginRecord {
        topic: record.topic.clone(),
        partition: Some(record.partition),
        offset: Some(record.offset),
        key: encode_value(&record.key),
        value: encode_value(&record.value),
        headers: headers_in(&record.headers),
        timestamp: record.timestamp,
        source_partition: None,
        source_offset: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_as_schemaless_json() {
        for value in [
            Value::from("text"),
            Value::Int64(42),
            Value::Boolean(true),
            Value::Null,
        ] {
            assert_eq!(decode_value(encode_value(&value).as_deref()), value);
        }
        assert_eq!(decode_value(Some(b"not json")), Value::from("not json"));
        assert_eq!(
            decode_value(Some(&[0xff, 0x00])),
            Value::Bytes(vec![0xff, 0])
        );
    }
}
