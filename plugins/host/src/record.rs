//! Records as they cross the boundary, packed (see `plugins/wit`): one byte buffer per batch
//! holds every record's topic, key, value, headers and source partition/offset, and each record
//! points into it. Keys and values are schemaless JSON bytes (raw bytes stay raw), headers are
//! bytes, source partition/offset are JSON text.
//!
//! [`Batch`] packs records for a plugin; [`RecordView`] reads one a plugin returned, checking
//! that every span lies inside the buffer and that text is UTF-8.

use serde_json::Value as Json;
use sluice_connector_api::{Header, SinkRecord, SourceRecord, Value};

use crate::bindings::types;

/// What a record carries besides its key and value bytes.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub headers: &'a [Header],
    pub timestamp: Option<i64>,
}

/// Records packed for a plugin call.
#[derive(Debug)]
pub struct Batch {
    pub(crate) inner: types::Batch,
    /// The span of the last topic written: consecutive records of one topic share it.
    last_topic: Option<types::Span>,
}

impl Batch {
    /// An empty batch with room for `records` records.
    pub fn with_capacity(records: usize) -> Self {
        Self {
            inner: types::Batch {
                data: Vec::with_capacity(records * 128),
                headers: Vec::new(),
                records: Vec::with_capacity(records),
            },
            last_topic: None,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.records.is_empty()
    }

    /// Empties the batch, keeping its buffers for the next one.
    pub fn clear(&mut self) {
        self.inner.data.clear();
        self.inner.headers.clear();
        self.inner.records.clear();
        self.last_topic = None;
    }

    /// Appends a record. `key` and `value` append their bytes to the buffer they are given and
    /// return `false` when there is no key or value (what they wrote is then ignored).
    pub fn push(
        &mut self,
        meta: Meta<'_>,
        key: impl FnOnce(&mut Vec<u8>) -> bool,
        value: impl FnOnce(&mut Vec<u8>) -> bool,
    ) {
        let topic = match self.last_topic {
            Some(span) if self.bytes(span) == meta.topic.as_bytes() => span,
            _ => {
                let span = self.write(|d| d.extend_from_slice(meta.topic.as_bytes()));
                self.last_topic = Some(span);
                span
            }
        };
        let key = self.write_optional(key);
        let value = self.write_optional(value);
        let first_header = self.inner.headers.len();
        for h in meta.headers {
            let key = self.write(|d| d.extend_from_slice(h.key.as_bytes()));
            let value = h
                .value
                .as_ref()
                .map(|v| self.write(|d| d.extend_from_slice(v)));
            self.inner.headers.push(types::Header { key, value });
        }
        self.inner.records.push(types::Record {
            topic,
            partition: meta.partition,
            offset: meta.offset,
            key,
            value,
            headers: span(first_header, self.inner.headers.len()),
            timestamp: meta.timestamp,
            source_partition: None,
            source_offset: None,
        });
    }

    /// The key bytes of record `i` as packed.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let span = self.inner.records.get(i)?.key?;
        Some(self.bytes(span))
    }

    /// The value bytes of record `i` as packed.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        let span = self.inner.records.get(i)?.value?;
        Some(self.bytes(span))
    }

    fn bytes(&self, span: types::Span) -> &[u8] {
        &self.inner.data[span.start as usize..(span.start + span.len) as usize]
    }

    fn write(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> types::Span {
        let start = self.inner.data.len();
        f(&mut self.inner.data);
        span(start, self.inner.data.len())
    }

    fn write_optional(&mut self, f: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<types::Span> {
        let start = self.inner.data.len();
        if f(&mut self.inner.data) {
            Some(span(start, self.inner.data.len()))
        } else {
            self.inner.data.truncate(start);
            None
        }
    }
}

/// The span from `start` to `end`. Batches stay far below 4 GiB: a plugin's memory limit is
/// smaller, and the runtime's batches are a few thousand records.
fn span(start: usize, end: usize) -> types::Span {
    types::Span {
        start: start as u32,
        len: (end - start) as u32,
    }
}

/// One record a plugin returned, read in place from its batch.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    headers: &'a [types::Header],
    data: &'a [u8],
    pub timestamp: Option<i64>,
    pub source_partition: Option<&'a str>,
    pub source_offset: Option<&'a str>,
}

impl RecordView<'_> {
    /// The record's headers, copied out.
    pub fn headers(&self) -> Vec<Header> {
        self.headers
            .iter()
            .map(|h| Header {
                // Checked when the view was made.
                key: String::from_utf8_lossy(slice(self.data, h.key).unwrap_or_default())
                    .into_owned(),
                value: h
                    .value
                    .and_then(|v| slice(self.data, v))
                    .map(<[u8]>::to_vec),
            })
            .collect()
    }
}

fn slice(data: &[u8], span: types::Span) -> Option<&[u8]> {
    let start = span.start as usize;
    data.get(start..start.checked_add(span.len as usize)?)
}

fn bytes<'a>(data: &'a [u8], span: types::Span, what: &str) -> Result<&'a [u8], String> {
    slice(data, span).ok_or_else(|| {
        format!(
            "{what} points at bytes {}..{} of a {}-byte batch",
            span.start,
            span.start as u64 + span.len as u64,
            data.len()
        )
    })
}

fn text<'a>(data: &'a [u8], span: types::Span, what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes(data, span, what)?).map_err(|_| format!("{what} is not UTF-8"))
}

/// Record `record` of a batch a plugin returned, checked: spans inside the buffer, text UTF-8.
pub(crate) fn view<'a>(
    data: &'a [u8],
    headers: &'a [types::Header],
    record: &types::Record,
) -> Result<RecordView<'a>, String> {
    let first = record.headers.start as usize;
    let headers = first
        .checked_add(record.headers.len as usize)
        .and_then(|end| headers.get(first..end))
        .ok_or_else(|| {
            format!(
                "the record's headers are entries {first}..{} of {}",
                first as u64 + record.headers.len as u64,
                headers.len()
            )
        })?;
    for h in headers {
        text(data, h.key, "a header key")?;
        if let Some(v) = h.value {
            bytes(data, v, "a header value")?;
        }
    }
    Ok(RecordView {
        topic: text(data, record.topic, "the topic")?,
        partition: record.partition,
        offset: record.offset,
        key: record.key.map(|s| bytes(data, s, "the key")).transpose()?,
        value: record
            .value
            .map(|s| bytes(data, s, "the value"))
            .transpose()?,
        headers,
        data,
        timestamp: record.timestamp,
        source_partition: record
            .source_partition
            .map(|s| text(data, s, "source-partition"))
            .transpose()?,
        source_offset: record
            .source_offset
            .map(|s| text(data, s, "source-offset"))
            .transpose()?,
    })
}

/// What a transform plugin returned for a batch: one entry per input record.
#[derive(Debug)]
pub struct Results {
    pub(crate) inner: types::Results,
}

impl Results {
    pub fn len(&self) -> usize {
        self.inner.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.records.is_empty()
    }

    /// The result for input record `i`: `Ok(None)` when the plugin dropped it, an error naming
    /// what is wrong when the plugin returned a malformed record.
    pub fn get(&self, i: usize) -> Result<Option<RecordView<'_>>, String> {
        match self.inner.records.get(i) {
            Some(Some(record)) => view(&self.inner.data, &self.inner.headers, record).map(Some),
            Some(None) => Ok(None),
            None => Err(format!("no result for record {i}")),
        }
    }
}

/// Appends the bytes a plugin receives for a key or value: nothing (returns `false`) for null,
/// bytes as they are, anything else as schemaless JSON (what Kafka Connect's JsonConverter
/// writes with schemas off).
pub fn encode_value(value: &Value, out: &mut Vec<u8>) -> bool {
    match value {
        Value::Null => false,
        Value::Bytes(b) => {
            out.extend_from_slice(b);
            true
        }
        other => {
            other.write_plain_json(out);
            true
        }
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
pub(crate) fn source_record(record: RecordView<'_>) -> Result<SourceRecord, String> {
    let source_partition = json_object(record.source_partition, "source-partition")?;
    let source_offset = json_object(record.source_offset, "source-offset")?;
    if record.topic.is_empty() {
        return Err("a source record needs a topic".to_owned());
    }
    Ok(SourceRecord {
        key: decode_value(record.key),
        key_schema: None,
        value: decode_value(record.value),
        value_schema: None,
        topic: record.topic.to_owned(),
        partition: record.partition,
        headers: record.headers(),
        timestamp: record.timestamp,
        source_partition,
        source_offset,
    })
}

/// Consumed records as a sink plugin receives them.
pub(crate) fn sink_batch(records: &[SinkRecord]) -> Batch {
    let mut batch = Batch::with_capacity(records.len());
    for r in records {
        batch.push(
            Meta {
                topic: &r.topic,
                partition: Some(r.partition),
                offset: Some(r.offset),
                headers: &r.headers,
                timestamp: r.timestamp,
            },
            |out| encode_value(&r.key, out),
            |out| encode_value(&r.value, out),
        );
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: &Value) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        encode_value(value, &mut out).then_some(out)
    }

    #[test]
    fn values_round_trip_as_schemaless_json() {
        for value in [
            Value::from("text"),
            Value::Int64(42),
            Value::Boolean(true),
            Value::Null,
        ] {
            assert_eq!(decode_value(encoded(&value).as_deref()), value);
        }
        assert_eq!(decode_value(Some(b"not json")), Value::from("not json"));
        assert_eq!(
            decode_value(Some(&[0xff, 0x00])),
            Value::Bytes(vec![0xff, 0])
        );
    }

    fn header(key: &str, value: Option<&[u8]>) -> Header {
        Header {
            key: key.to_owned(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn a_packed_batch_reads_back_record_by_record() {
        let headers = [header("h1", Some(b"v1")), header("h2", None)];
        let mut batch = Batch::with_capacity(3);
        for (i, topic) in ["a", "a", "b"].into_iter().enumerate() {
            batch.push(
                Meta {
                    topic,
                    partition: Some(i as i32),
                    offset: Some(10 + i as i64),
                    headers: if i == 1 { &headers } else { &[] },
                    timestamp: Some(1000),
                },
                |out| {
                    out.extend_from_slice(format!("k{i}").as_bytes());
                    i != 2
                },
                |out| encode_value(&Value::Int64(i as i64), out),
            );
        }
        // Records of one topic share its bytes.
        let topics: Vec<(u32, u32)> = batch
            .inner
            .records
            .iter()
            .map(|r| (r.topic.start, r.topic.len))
            .collect();
        assert_eq!(topics, [(0, 1), (0, 1), (topics[2].0, 1)]);
        assert!(topics[2].0 > 0);
        assert_eq!(batch.key(1), Some(&b"k1"[..]));
        assert_eq!(batch.key(2), None);
        assert_eq!(batch.value(2), Some(&b"2"[..]));
        let b = &batch.inner;
        let views: Vec<RecordView<'_>> = b
            .records
            .iter()
            .map(|r| view(&b.data, &b.headers, r).unwrap())
            .collect();
        assert_eq!(
            views.iter().map(|v| v.topic).collect::<Vec<_>>(),
            ["a", "a", "b"]
        );
        assert_eq!(views[1].offset, Some(11));
        assert_eq!(views[1].headers(), headers);
        assert!(views[0].headers().is_empty());
        assert_eq!(views[2].key, None);
        assert_eq!(views[0].value, Some(&b"0"[..]));
    }

    #[test]
    fn spans_outside_the_batch_and_bad_text_are_named() {
        let data = b"topic\xff".to_vec();
        let span = |start, len| types::Span { start, len };
        let record = |topic, value| types::Record {
            topic,
            partition: None,
            offset: None,
            key: None,
            value,
            headers: span(0, 0),
            timestamp: None,
            source_partition: None,
            source_offset: None,
        };
        let err = view(&data, &[], &record(span(0, 5), Some(span(3, 10)))).unwrap_err();
        assert_eq!(err, "the value points at bytes 3..13 of a 6-byte batch");
        let err = view(&data, &[], &record(span(0, 6), None)).unwrap_err();
        assert_eq!(err, "the topic is not UTF-8");
        let err = view(&data, &[], &record(span(u32::MAX, 2), None)).unwrap_err();
        assert!(err.starts_with("the topic points at bytes"), "{err}");
        let mut r = record(span(0, 5), None);
        r.headers = span(1, 1);
        let err = view(&data, &[], &r).unwrap_err();
        assert_eq!(err, "the record's headers are entries 1..2 of 0");
    }
}
