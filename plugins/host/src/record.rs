//! Records as they cross the boundary, packed (the layout is documented on the WIT `batch`):
//! one byte buffer per batch holds every record's topic, key, value, headers and source
//! partition/offset, and a table of numbers says where each record's parts are. Keys and values
//! are schemaless JSON bytes (raw bytes stay raw), headers are bytes, source partition/offset are
//! JSON text.
//!
//! [`Batch`] packs records for a plugin; [`RecordView`] reads one a plugin returned, checking
//! that every span lies inside the buffer and that text is UTF-8.

use serde_json::Value as Json;
use sluice_connector_api::{Header, SinkRecord, SourceRecord, Value};

use crate::bindings::types;

/// Numbers per record and per header in a batch's tables.
const RECORD_STRIDE: usize = 15;
const HEADER_STRIDE: usize = 4;
/// Positions in a record's numbers.
const TOPIC: usize = 0;
const PARTITION: usize = 2;
const OFFSET: usize = 3;
const KEY: usize = 4;
const VALUE: usize = 6;
const FIRST_HEADER: usize = 8;
const HEADER_COUNT: usize = 9;
const TIMESTAMP: usize = 10;
const SOURCE_PARTITION: usize = 11;
const SOURCE_OFFSET: usize = 13;
/// What marks an absent span, partition, offset or timestamp.
const NONE: i64 = -1;

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
    last_topic: Option<(i64, i64)>,
}

impl Batch {
    /// An empty batch with room for `records` records.
    pub fn with_capacity(records: usize) -> Self {
        Self {
            inner: types::Batch {
                data: Vec::with_capacity(records * 128),
                records: Vec::with_capacity(records * RECORD_STRIDE),
                headers: Vec::new(),
            },
            last_topic: None,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.records.len() / RECORD_STRIDE
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
        let first_header = (self.inner.headers.len() / HEADER_STRIDE) as i64;
        for h in meta.headers {
            let key = self.write(|d| d.extend_from_slice(h.key.as_bytes()));
            let value = match &h.value {
                Some(v) => self.write(|d| d.extend_from_slice(v)),
                None => (0, NONE),
            };
            self.inner
                .headers
                .extend_from_slice(&[key.0, key.1, value.0, value.1]);
        }
        self.inner.records.extend_from_slice(&[
            topic.0,
            topic.1,
            meta.partition.map_or(NONE, i64::from),
            meta.offset.unwrap_or(NONE),
            key.0,
            key.1,
            value.0,
            value.1,
            first_header,
            meta.headers.len() as i64,
            meta.timestamp.unwrap_or(NONE),
            0,
            NONE,
            0,
            NONE,
        ]);
    }

    /// The key bytes of record `i` as packed.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.part(i, KEY)
    }

    /// The value bytes of record `i` as packed.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        self.part(i, VALUE)
    }

    fn part(&self, i: usize, at: usize) -> Option<&[u8]> {
        let r = self
            .inner
            .records
            .get(i * RECORD_STRIDE..(i + 1) * RECORD_STRIDE)?;
        slice(&self.inner.data, r[at], r[at + 1])
    }

    fn bytes(&self, (start, len): (i64, i64)) -> &[u8] {
        &self.inner.data[start as usize..(start + len) as usize]
    }

    fn write(&mut self, f: impl FnOnce(&mut Vec<u8>)) -> (i64, i64) {
        let start = self.inner.data.len();
        f(&mut self.inner.data);
        (start as i64, (self.inner.data.len() - start) as i64)
    }

    fn write_optional(&mut self, f: impl FnOnce(&mut Vec<u8>) -> bool) -> (i64, i64) {
        let start = self.inner.data.len();
        if f(&mut self.inner.data) {
            (start as i64, (self.inner.data.len() - start) as i64)
        } else {
            self.inner.data.truncate(start);
            (0, NONE)
        }
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
    /// The record's headers' numbers (4 per header).
    headers: &'a [i64],
    data: &'a [u8],
    pub timestamp: Option<i64>,
    pub source_partition: Option<&'a str>,
    pub source_offset: Option<&'a str>,
}

impl RecordView<'_> {
    /// The record's headers, copied out.
    pub fn headers(&self) -> Vec<Header> {
        self.headers
            .chunks_exact(HEADER_STRIDE)
            .map(|h| Header {
                // Checked when the view was made.
                key: String::from_utf8_lossy(slice(self.data, h[0], h[1]).unwrap_or_default())
                    .into_owned(),
                value: slice(self.data, h[2], h[3]).map(<[u8]>::to_vec),
            })
            .collect()
    }
}

/// The bytes of a span; `None` when it is absent (length -1) or outside `data`.
fn slice(data: &[u8], start: i64, len: i64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    let len = usize::try_from(len).ok()?;
    data.get(start..start.checked_add(len)?)
}

/// An optional span: `None` when its length is -1, an error naming `what` when it does not lie
/// inside `data`.
fn bytes<'a>(data: &'a [u8], start: i64, len: i64, what: &str) -> Result<Option<&'a [u8]>, String> {
    if len == NONE {
        return Ok(None);
    }
    slice(data, start, len).map(Some).ok_or_else(|| {
        format!(
            "{what} points at bytes {start}..{} of a {}-byte batch",
            start.saturating_add(len),
            data.len()
        )
    })
}

fn text<'a>(data: &'a [u8], start: i64, len: i64, what: &str) -> Result<Option<&'a str>, String> {
    match bytes(data, start, len, what)? {
        Some(b) => std::str::from_utf8(b)
            .map(Some)
            .map_err(|_| format!("{what} is not UTF-8")),
        None => Ok(None),
    }
}

fn optional(n: i64) -> Option<i64> {
    (n != NONE).then_some(n)
}

/// Record `i` of a batch a plugin returned, checked: spans inside the buffer, text UTF-8,
/// numbers in range. `Ok(None)` when the record is dropped (topic length -1).
pub(crate) fn view(batch: &types::Batch, i: usize) -> Result<Option<RecordView<'_>>, String> {
    let data = &batch.data;
    let r = batch
        .records
        .get(i * RECORD_STRIDE..(i + 1) * RECORD_STRIDE)
        .ok_or_else(|| format!("no record {i}"))?;
    let Some(topic) = text(data, r[TOPIC], r[TOPIC + 1], "the topic")? else {
        return Ok(None);
    };
    let partition = match r[PARTITION] {
        NONE => None,
        p => Some(i32::try_from(p).map_err(|_| format!("partition {p} is out of range"))?),
    };
    let (first, count) = (r[FIRST_HEADER], r[HEADER_COUNT]);
    let headers = usize::try_from(first)
        .ok()
        .zip(usize::try_from(count).ok())
        .and_then(|(first, count)| {
            let start = first.checked_mul(HEADER_STRIDE)?;
            batch
                .headers
                .get(start..start.checked_add(count.checked_mul(HEADER_STRIDE)?)?)
        })
        .ok_or_else(|| {
            format!(
                "the record's headers are entries {first}..{} of {}",
                first.saturating_add(count),
                batch.headers.len() / HEADER_STRIDE
            )
        })?;
    for h in headers.chunks_exact(HEADER_STRIDE) {
        text(data, h[0], h[1], "a header key")?.ok_or("a header has no key")?;
        bytes(data, h[2], h[3], "a header value")?;
    }
    Ok(Some(RecordView {
        topic,
        partition,
        offset: optional(r[OFFSET]),
        key: bytes(data, r[KEY], r[KEY + 1], "the key")?,
        value: bytes(data, r[VALUE], r[VALUE + 1], "the value")?,
        headers,
        data,
        timestamp: optional(r[TIMESTAMP]),
        source_partition: text(
            data,
            r[SOURCE_PARTITION],
            r[SOURCE_PARTITION + 1],
            "source-partition",
        )?,
        source_offset: text(
            data,
            r[SOURCE_OFFSET],
            r[SOURCE_OFFSET + 1],
            "source-offset",
        )?,
    }))
}

/// Checks a batch as a plugin would return it, as the host does before using one: its tables,
/// then every record in them. The number of records, or what is wrong. For the fuzzer
/// (`fuzz/`).
pub fn check_returned_batch(
    data: Vec<u8>,
    records: Vec<i64>,
    headers: Vec<i64>,
) -> Result<usize, String> {
    let batch = types::Batch {
        data,
        records,
        headers,
    };
    let n = count(&batch)?;
    for i in 0..n {
        if let Some(record) = view(&batch, i)? {
            let _ = record.headers();
        }
    }
    Ok(n)
}

/// The number of records in a batch a plugin returned, or what is wrong with its tables.
pub(crate) fn count(batch: &types::Batch) -> Result<usize, String> {
    if !batch.records.len().is_multiple_of(RECORD_STRIDE) {
        return Err(format!(
            "the records table has {} numbers; expected {RECORD_STRIDE} per record",
            batch.records.len()
        ));
    }
    if !batch.headers.len().is_multiple_of(HEADER_STRIDE) {
        return Err(format!(
            "the headers table has {} numbers; expected {HEADER_STRIDE} per header",
            batch.headers.len()
        ));
    }
    Ok(batch.records.len() / RECORD_STRIDE)
}

/// What a transform plugin returned for a batch: one entry per input record.
#[derive(Debug)]
pub struct Results {
    pub(crate) inner: types::Batch,
}

impl Results {
    /// The result for input record `i`: `Ok(None)` when the plugin dropped it, an error naming
    /// what is wrong when the plugin returned a malformed record.
    pub fn get(&self, i: usize) -> Result<Option<RecordView<'_>>, String> {
        view(&self.inner, i)
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
                    timestamp: (i != 2).then_some(1000),
                },
                |out| {
                    out.extend_from_slice(format!("k{i}").as_bytes());
                    i != 2
                },
                |out| encode_value(&Value::Int64(i as i64), out),
            );
        }
        assert_eq!(batch.len(), 3);
        // Records of one topic share its bytes.
        let r = &batch.inner.records;
        assert_eq!(r[..2], r[RECORD_STRIDE..RECORD_STRIDE + 2]);
        assert_ne!(r[0], r[2 * RECORD_STRIDE]);
        assert_eq!(batch.key(1), Some(&b"k1"[..]));
        assert_eq!(batch.key(2), None);
        assert_eq!(batch.value(2), Some(&b"2"[..]));
        assert_eq!(count(&batch.inner), Ok(3));
        let views: Vec<RecordView<'_>> = (0..3)
            .map(|i| view(&batch.inner, i).unwrap().unwrap())
            .collect();
        assert_eq!(
            views.iter().map(|v| v.topic).collect::<Vec<_>>(),
            ["a", "a", "b"]
        );
        assert_eq!(views[1].offset, Some(11));
        assert_eq!(views[1].partition, Some(1));
        assert_eq!(views[1].headers(), headers);
        assert!(views[0].headers().is_empty());
        assert_eq!(views[2].key, None);
        assert_eq!(views[2].timestamp, None);
        assert_eq!(views[0].value, Some(&b"0"[..]));
        assert_eq!(views[0].source_offset, None);
    }

    #[test]
    fn bad_spans_text_and_tables_are_named() {
        let record = |topic: [i64; 2], value: [i64; 2]| {
            let mut r = vec![0i64; RECORD_STRIDE];
            r[TOPIC..TOPIC + 2].copy_from_slice(&topic);
            r[VALUE..VALUE + 2].copy_from_slice(&value);
            for at in [KEY, SOURCE_PARTITION, SOURCE_OFFSET] {
                r[at + 1] = NONE;
            }
            types::Batch {
                data: b"topic\xff".to_vec(),
                records: r,
                headers: Vec::new(),
            }
        };
        let err = |b: &types::Batch| view(b, 0).unwrap_err();
        assert_eq!(
            err(&record([0, 5], [3, 10])),
            "the value points at bytes 3..13 of a 6-byte batch"
        );
        assert_eq!(err(&record([0, 6], [0, NONE])), "the topic is not UTF-8");
        assert!(err(&record([-5, 2], [0, NONE])).starts_with("the topic points at bytes"));
        assert!(
            view(&record([0, NONE], [0, 1]), 0).unwrap().is_none(),
            "dropped"
        );
        let mut b = record([0, 5], [0, NONE]);
        b.records[FIRST_HEADER] = 1;
        b.records[HEADER_COUNT] = 1;
        assert_eq!(err(&b), "the record's headers are entries 1..2 of 0");
        b.records[PARTITION] = i64::from(i32::MAX) + 1;
        b.records[HEADER_COUNT] = 0;
        assert_eq!(err(&b), "partition 2147483648 is out of range");
        b.records.pop();
        assert_eq!(
            count(&b),
            Err("the records table has 14 numbers; expected 15 per record".to_owned())
        );
    }
}
