//! Records as a plugin handles them: plain owned values. The SDK unpacks each batch the host
//! sends (one buffer plus spans, see `plugins/wit`) into these and packs results back.

use std::borrow::Cow;
use std::cell::RefCell;

/// A record header: a key and raw value bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// A record: topic, partition, key/value bytes (schemaless JSON for records from Kafka
/// Connect-style sources), headers, timestamp, and for source records the source partition and
/// offset as JSON objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// Kafka partition; `None` lets the producer choose from the key (source records).
    pub partition: Option<i32>,
    /// Kafka offset of a consumed record (sinks, sink-side transforms).
    pub offset: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Source partition as a JSON object, e.g. `{"shard":"a"}` (source records).
    pub source_partition: Option<String>,
    /// Source offset as a JSON object, e.g. `{"seq":42}` (source records).
    pub source_offset: Option<String>,
}

impl Record {
    /// A record for `topic` with a value and nothing else.
    pub fn new(topic: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            value,
            ..Self::default()
        }
    }

    /// The value parsed as JSON; `None` when absent or not JSON.
    pub fn value_json(&self) -> Option<serde_json::Value> {
        self.value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
    }

    /// Replaces the value with this JSON.
    pub fn set_value_json(&mut self, value: &serde_json::Value) {
        // Serializing a JSON value into a Vec cannot fail.
        self.value = Some(serde_json::to_vec(value).unwrap_or_default());
    }

    /// Replaces some top-level fields of a JSON object value without parsing the rest: `edit`
    /// gets each field's name and the raw JSON text of its value (`"x"`, `12`, `{"a":1}`) and
    /// returns the value's new JSON text, or `None` to keep it. The rest of the value is kept
    /// byte for byte. Cheaper than [`Self::value_json`] plus
    /// [`Self::set_value_json`] when only a few fields change. Returns `false` (value untouched)
    /// when the value is absent or not a JSON object.
    pub fn edit_value_fields<'a>(
        &mut self,
        edit: impl FnMut(&str, &str) -> Option<Cow<'a, str>>,
    ) -> bool {
        let Some(value) = self.value.as_mut() else {
            return false;
        };
        let mut out = take_bytes(&[]);
        if crate::fields::edit_fields(value, &mut out, edit) {
            recycle_bytes(std::mem::replace(value, out));
            true
        } else {
            recycle_bytes(out);
            false
        }
    }

    /// The key parsed as JSON; `None` when absent or not JSON.
    pub fn key_json(&self) -> Option<serde_json::Value> {
        self.key
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
    }

    /// Replaces the key with this JSON.
    pub fn set_key_json(&mut self, key: &serde_json::Value) {
        // Serializing a JSON value into a Vec cannot fail.
        self.key = Some(serde_json::to_vec(key).unwrap_or_default());
    }
}

/// Buffers of records already packed, reused for the records of the next batch, so that a
/// plugin does not allocate and free each key, value and topic of every record.
#[derive(Default)]
struct Pool {
    bytes: Vec<Vec<u8>>,
}

/// At most this many buffers are kept, each at most this large.
const POOL_BUFFERS: usize = 4096;
const POOL_BUFFER_BYTES: usize = 64 * 1024;

std::thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: Vec::new() }) };
}

/// A buffer holding `src`, from the pool when it has one.
pub fn take_bytes(src: &[u8]) -> Vec<u8> {
    let mut buf = POOL
        .with(|p| p.borrow_mut().bytes.pop())
        .unwrap_or_default();
    buf.clear();
    buf.extend_from_slice(src);
    buf
}

fn take_string(src: &str) -> String {
    // The bytes were a str: this cannot fail (and checks ASCII quickly).
    String::from_utf8(take_bytes(src.as_bytes())).unwrap_or_default()
}

pub fn recycle_bytes(buf: Vec<u8>) {
    if buf.capacity() > 0 && buf.capacity() <= POOL_BUFFER_BYTES {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.bytes.len() < POOL_BUFFERS {
                p.bytes.push(buf);
            }
        });
    }
}

/// Gives a packed record's buffers back to the pool.
pub fn recycle(record: Record) {
    recycle_bytes(record.topic.into_bytes());
    for buf in [record.key, record.value].into_iter().flatten() {
        recycle_bytes(buf);
    }
}

/// Numbers per record and per header in a batch's tables (see the WIT `batch`), what marks an
/// absent part, and where each part sits among a record's numbers.
const RECORD_STRIDE: usize = 15;
const HEADER_STRIDE: usize = 4;
const NONE: i64 = -1;
const KEY: usize = 4;
const VALUE: usize = 6;
const SOURCE_PARTITION: usize = 11;
const SOURCE_OFFSET: usize = 13;

/// A batch's three lists.
pub struct Packed {
    pub data: Vec<u8>,
    pub records: Vec<i64>,
    pub headers: Vec<i64>,
}

/// Reads records out of a batch.
struct Unpacker<'a> {
    data: &'a [u8],
    last_topic: Option<((i64, i64), String)>,
}

impl<'a> Unpacker<'a> {
    /// The bytes of a span; `None` when absent (or outside the batch, which the host never
    /// sends).
    fn slice(&self, start: i64, len: i64) -> Option<&'a [u8]> {
        let start = usize::try_from(start).ok()?;
        let len = usize::try_from(len).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    fn bytes(&self, span: &[i64]) -> Option<Vec<u8>> {
        self.slice(span[0], span[1]).map(take_bytes)
    }

    fn text(&self, span: &[i64]) -> Option<String> {
        let bytes = self.slice(span[0], span[1])?;
        Some(match std::str::from_utf8(bytes) {
            Ok(text) => take_string(text),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    /// A topic; consecutive records of one topic share a span, read once.
    fn topic(&mut self, span: &[i64]) -> String {
        let key = (span[0], span[1]);
        match &self.last_topic {
            Some((last, topic)) if *last == key => take_string(topic),
            _ => {
                let topic = self.text(span).unwrap_or_default();
                self.last_topic = Some((key, topic.clone()));
                topic
            }
        }
    }
}

fn optional(n: i64) -> Option<i64> {
    (n != NONE).then_some(n)
}

/// The records of a batch the host sent, read one by one.
pub fn records<'a>(
    data: &'a [u8],
    records: &'a [i64],
    headers: &'a [i64],
) -> impl ExactSizeIterator<Item = Record> + 'a {
    let mut u = Unpacker {
        data,
        last_topic: None,
    };
    records.chunks_exact(RECORD_STRIDE).map(move |r| {
        let first = usize::try_from(r[8]).unwrap_or(0) * HEADER_STRIDE;
        let count = usize::try_from(r[9]).unwrap_or(0) * HEADER_STRIDE;
        let headers = headers
            .get(first..first + count)
            .unwrap_or_default()
            .chunks_exact(HEADER_STRIDE)
            .map(|h| Header {
                key: u.text(&h[0..2]).unwrap_or_default(),
                value: u.bytes(&h[2..4]),
            })
            .collect();
        Record {
            topic: u.topic(&r[0..2]),
            partition: optional(r[2]).and_then(|p| i32::try_from(p).ok()),
            offset: optional(r[3]),
            key: u.bytes(&r[KEY..KEY + 2]),
            value: u.bytes(&r[VALUE..VALUE + 2]),
            headers,
            timestamp: optional(r[10]),
            source_partition: u.text(&r[SOURCE_PARTITION..SOURCE_PARTITION + 2]),
            source_offset: u.text(&r[SOURCE_OFFSET..SOURCE_OFFSET + 2]),
        }
    })
}

/// Writes records into a batch.
pub struct Packer {
    out: Packed,
    last_topic: Option<(i64, i64)>,
}

impl Packer {
    fn bytes(&mut self, bytes: &[u8]) -> [i64; 2] {
        let start = self.out.data.len() as i64;
        self.out.data.extend_from_slice(bytes);
        [start, bytes.len() as i64]
    }

    fn optional(&mut self, bytes: Option<&[u8]>) -> [i64; 2] {
        match bytes {
            Some(b) => self.bytes(b),
            None => [0, NONE],
        }
    }

    /// A topic; consecutive records of one topic share its bytes.
    fn topic(&mut self, topic: &str) -> [i64; 2] {
        if let Some((start, len)) = self.last_topic
            && self.out.data.get(start as usize..(start + len) as usize) == Some(topic.as_bytes())
        {
            return [start, len];
        }
        let span = self.bytes(topic.as_bytes());
        self.last_topic = Some((span[0], span[1]));
        span
    }

    fn record(&mut self, r: &Record) {
        self.out.data.reserve(packed_size(r));
        let first_header = (self.out.headers.len() / HEADER_STRIDE) as i64;
        for h in &r.headers {
            let key = self.bytes(h.key.as_bytes());
            let value = self.optional(h.value.as_deref());
            self.out
                .headers
                .extend_from_slice(&[key[0], key[1], value[0], value[1]]);
        }
        let topic = self.topic(&r.topic);
        let key = self.optional(r.key.as_deref());
        let value = self.optional(r.value.as_deref());
        let source_partition = self.optional(r.source_partition.as_deref().map(str::as_bytes));
        let source_offset = self.optional(r.source_offset.as_deref().map(str::as_bytes));
        self.out.records.extend_from_slice(&[
            topic[0],
            topic[1],
            r.partition.map_or(NONE, i64::from),
            r.offset.unwrap_or(NONE),
            key[0],
            key[1],
            value[0],
            value[1],
            first_header,
            r.headers.len() as i64,
            r.timestamp.unwrap_or(NONE),
            source_partition[0],
            source_partition[1],
            source_offset[0],
            source_offset[1],
        ]);
    }
}

impl Packer {
    /// A packer for about `records` records of `bytes` bytes.
    pub fn new(records: usize, bytes: usize) -> Self {
        Self {
            out: Packed {
                data: Vec::with_capacity(bytes),
                records: Vec::with_capacity(records * RECORD_STRIDE),
                headers: Vec::new(),
            },
            last_topic: None,
        }
    }

    /// Appends a record, or a dropped one (a topic length of -1) for `None`. The record's
    /// buffers go back to the pool.
    pub fn push(&mut self, record: Option<Record>) {
        match record {
            Some(r) => {
                self.record(&r);
                recycle(r);
            }
            None => {
                let mut dropped = [0; RECORD_STRIDE];
                dropped[1] = NONE;
                self.out.records.extend_from_slice(&dropped);
            }
        }
    }

    pub fn finish(self) -> Packed {
        self.out
    }
}

/// The bytes a record will take in a batch, roughly.
fn packed_size(r: &Record) -> usize {
    r.topic.len()
        + r.key.as_ref().map_or(0, Vec::len)
        + r.value.as_ref().map_or(0, Vec::len)
        + r.headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
        + r.source_partition.as_ref().map_or(0, String::len)
        + r.source_offset.as_ref().map_or(0, String::len)
}
