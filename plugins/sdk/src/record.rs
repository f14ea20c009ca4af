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
    static POOL: RefCell<Pool> = RefCell::new(Pool::default());
}

/// A buffer holding `src`, from the pool when it has one.
pub fn take_bytes(src: &[u8]) -> Vec<u8> {
    let mut buf = POOL
        .with(|p| p.borrow_mut().bytes.pop())
        .unwrap_or_default();
    buf.clear();
    crate::copy::append(&mut buf, src);
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

/// A span of a batch's bytes as (start, len); the world modules turn it into their WIT `span`.
pub type Span = (u32, u32);

/// Reads records out of a batch's bytes.
#[doc(hidden)]
pub struct Unpacker<'a> {
    data: &'a [u8],
    last_topic: Option<(Span, String)>,
}

impl<'a> Unpacker<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            last_topic: None,
        }
    }

    /// The bytes of a span (empty if the host sent a span outside the batch, which it does not).
    fn slice(&self, (start, len): Span) -> &'a [u8] {
        let start = start as usize;
        self.data
            .get(start..start + len as usize)
            .unwrap_or_default()
    }

    pub fn bytes(&self, span: Span) -> Vec<u8> {
        take_bytes(self.slice(span))
    }

    pub fn text(&self, span: Span) -> String {
        match std::str::from_utf8(self.slice(span)) {
            Ok(text) => take_string(text),
            Err(_) => String::from_utf8_lossy(self.slice(span)).into_owned(),
        }
    }

    /// A topic; consecutive records of one topic share a span, read once.
    pub fn topic(&mut self, span: Span) -> String {
        match &self.last_topic {
            Some((last, topic)) if *last == span => take_string(topic),
            _ => {
                let topic = self.text(span);
                self.last_topic = Some((span, topic.clone()));
                topic
            }
        }
    }
}

/// Writes records into a batch's bytes.
#[doc(hidden)]
#[derive(Default)]
pub struct Packer {
    pub data: Vec<u8>,
    last_topic: Option<Span>,
}

impl Packer {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            last_topic: None,
        }
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.data.len() as u32;
        crate::copy::append(&mut self.data, bytes);
        (start, bytes.len() as u32)
    }

    /// A topic; consecutive records of one topic share its bytes.
    pub fn topic(&mut self, topic: &str) -> Span {
        if let Some((start, len)) = self.last_topic
            && self.data.get(start as usize..(start + len) as usize) == Some(topic.as_bytes())
        {
            return (start, len);
        }
        let span = self.bytes(topic.as_bytes());
        self.last_topic = Some(span);
        span
    }

    /// Room for about this many more bytes.
    pub fn reserve(&mut self, bytes: usize) {
        self.data.reserve(bytes);
    }
}

/// The bytes a record will take in a batch, roughly.
#[doc(hidden)]
pub fn packed_size(r: &Record) -> usize {
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
