//! How records are laid out in archive files, and read back.
//!
//! - JSON lines: one object per record, `{"topic","partition","offset","timestamp","headers":
//!   [{"key","value"(base64|null)}],"key","value"}`. Byte keys/values (the `bytes` converter)
//!   are written as `key_base64`/`value_base64` so a replay restores them byte for byte; other
//!   values as plain JSON, so the archive is queryable.
//! - Parquet: columns `topic`, `partition`, `offset`, `timestamp` (ms, UTC), `headers`
//!   (list of {key, value}), `key` and `value`, whose types derive from the record schemas
//!   (bytes -> binary, string -> utf8, ints, floats, booleans, Date, Timestamp, structs of these);
//!   anything else, or a schemaless non-string value, is a utf8 column of JSON text, marked with
//!   the field metadata `sluice.json = true`.
//! - bytes: the raw value followed by a newline (values only; not replayable).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMillisecondType,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int8Array,
    Int16Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field as ArrowField, Fields, Schema as ArrowSchema, TimeUnit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as ParquetCodec, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde_json::Value as Json;
use sluice_connector_api::{Header, Schema, SchemaType, SinkRecord, Struct, Value, logical};

use crate::config::{Compression, Format};
use crate::error::{Error, Result};

const JSON_FIELD_META: &str = "sluice.json";

/// The file name extension of a format and compression.
pub(crate) fn extension(format: Format, compression: Compression) -> &'static str {
    match (format, compression) {
        (Format::Parquet, _) => "parquet",
        (Format::Json, Compression::Gzip) => "json.gz",
        (Format::Json, Compression::Zstd) => "json.zst",
        (Format::Json, _) => "json",
        (Format::Bytes, Compression::Gzip) => "bin.gz",
        (Format::Bytes, Compression::Zstd) => "bin.zst",
        (Format::Bytes, _) => "bin",
    }
}

/// A record as archived, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub headers: Vec<Header>,
    pub key: Value,
    pub value: Value,
}

/// Appends the JSON line of `record` to `out`, written field by field (no intermediate JSON
/// tree: this runs once per archived record).
pub(crate) fn write_json_line(record: &SinkRecord, out: &mut Vec<u8>) -> Result<()> {
    let fail = |e: serde_json::Error| Error::Data(format!("cannot write JSON: {e}"));
    out.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut *out, &record.topic).map_err(fail)?;
    out.extend_from_slice(b",\"partition\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.partition).as_bytes());
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.offset).as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    match record.timestamp {
        Some(ts) => out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"headers\":[");
    for (i, h) in record.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut *out, &h.key).map_err(fail)?;
        out.extend_from_slice(b",\"value\":");
        match &h.value {
            Some(v) => write_base64(out, v),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
    out.push(b']');
    for (name, value) in [("key", &record.key), ("value", &record.value)] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        match value {
            Value::Bytes(b) => {
                out.extend_from_slice(b"_base64\":");
                write_base64(out, b);
            }
            other => {
                out.extend_from_slice(b"\":");
                serde_json::to_writer(&mut *out, &other.to_plain_json()).map_err(fail)?;
            }
        }
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// A JSON string of base64 text (which never needs escaping).
fn write_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = BASE64
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + written);
    out.push(b'"');
}

/// Whether `format` can hold `record`, checked before anything of it is written: a record that
/// fails here is a bad record for the pipeline's error policy (the dead-letter topic), not a
/// broken archive.
pub(crate) fn check_record(format: Format, record: &SinkRecord) -> Result<()> {
    match (format, &record.value) {
        (Format::Bytes, Value::Bytes(_) | Value::String(_) | Value::Null) => Ok(()),
        (Format::Bytes, other) => Err(Error::Data(format!(
            "format `bytes` needs byte or string values (use the bytes converter); {}-{} offset {} has {}",
            record.topic,
            record.partition,
            record.offset,
            other.type_name()
        ))),
        (Format::Json | Format::Parquet, _) => Ok(()),
    }
}

/// Appends the raw value of `record` and a newline.
pub(crate) fn write_bytes_line(record: &SinkRecord, out: &mut Vec<u8>) -> Result<()> {
    check_record(Format::Bytes, record)?;
    match &record.value {
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::String(s) => out.extend_from_slice(s.as_bytes()),
        _ => {}
    }
    out.push(b'\n');
    Ok(())
}

fn parse_json_line(key: &str, line: &[u8]) -> Result<ArchivedRecord> {
    let corrupt = |detail: String| Error::Corrupt {
        key: key.to_owned(),
        detail,
    };
    let json: serde_json::Map<String, Json> =
        serde_json::from_slice(line).map_err(|e| corrupt(format!("bad JSON line: {e}")))?;
    let int = |name: &str| {
        json.get(name)
            .and_then(Json::as_i64)
            .ok_or_else(|| corrupt(format!("a line has no integer `{name}`")))
    };
    let part = |name: &str| -> Result<Value> {
        if let Some(b64) = json.get(&format!("{name}_base64")).and_then(Json::as_str) {
            return BASE64
                .decode(b64)
                .map(Value::Bytes)
                .map_err(|e| corrupt(format!("bad base64 in `{name}_base64`: {e}")));
        }
        Ok(json.get(name).map_or(Value::Null, Value::from_plain_json))
    };
    let mut headers = Vec::new();
    for h in json
        .get("headers")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let key = h
            .get("key")
            .and_then(Json::as_str)
            .ok_or_else(|| corrupt("a header has no key".into()))?;
        let value = match h.get("value").and_then(Json::as_str) {
            Some(v) => Some(
                BASE64
                    .decode(v)
                    .map_err(|e| corrupt(format!("bad base64 header value: {e}")))?,
            ),
            None => None,
        };
        headers.push(Header {
            key: key.to_owned(),
            value,
        });
    }
    Ok(ArchivedRecord {
        topic: json
            .get("topic")
            .and_then(Json::as_str)
            .ok_or_else(|| corrupt("a line has no `topic`".into()))?
            .to_owned(),
        partition: int("partition")? as i32,
        offset: int("offset")?,
        timestamp: json.get("timestamp").and_then(Json::as_i64),
        headers,
        key: part("key")?,
        value: part("value")?,
    })
}

/// Reads every record of an archived object (JSON lines or Parquet, by its extension).
pub fn read_object(key: &str, data: Bytes) -> Result<Vec<ArchivedRecord>> {
    let file = key.rsplit('/').next().unwrap_or(key);
    if file.ends_with(".parquet") {
        return read_parquet(key, data);
    }
    let plain = decompress(key, file, &data)?;
    if file.contains(".json") {
        plain
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_json_line(key, l))
            .collect()
    } else {
        Err(Error::Corrupt {
            key: key.to_owned(),
            detail: "only JSON-lines and Parquet archives can be replayed".into(),
        })
    }
}

fn decompress(key: &str, file: &str, data: &[u8]) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        context: format!("cannot decompress {key}"),
        source,
    };
    if file.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else if file.ends_with(".zst") {
        zstd::decode_all(data).map_err(io)
    } else {
        Ok(data.to_vec())
    }
}

/// Streaming compression whose output can be taken as it grows (for multipart uploads).
pub(crate) enum Compressor {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Compressor {
    pub(crate) fn new(compression: Compression) -> Result<Self> {
        Ok(match compression {
            Compression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            Compression::Zstd => Self::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), 3).map_err(|source| Error::Io {
                    context: "cannot start zstd".into(),
                    source,
                })?,
            ),
            Compression::None | Compression::Snappy => Self::Plain(Vec::new()),
        })
    }

    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        let result = match self {
            Self::Plain(out) => {
                out.extend_from_slice(data);
                Ok(())
            }
            Self::Gzip(e) => e.write_all(data),
            Self::Zstd(e) => e.write_all(data),
        };
        result.map_err(|source| Error::Io {
            context: "cannot compress".into(),
            source,
        })
    }

    pub(crate) fn output_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Plain(out) => out,
            Self::Gzip(e) => e.get_mut(),
            Self::Zstd(e) => e.get_mut(),
        }
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        let result = match self {
            Self::Plain(out) => Ok(out),
            Self::Gzip(e) => e.finish(),
            Self::Zstd(e) => e.finish(),
        };
        result.map_err(|source| Error::Io {
            context: "cannot finish compression".into(),
            source,
        })
    }
}

/// The Arrow shape of a key or value column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Binary,
    Utf8,
    /// JSON text in a utf8 column.
    Json,
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Date,
    Timestamp,
    Struct(Vec<(String, Kind)>),
}

impl Kind {
    /// The column kind of a schema, or of a schemaless value (`None` for a null: it fits any).
    pub(crate) fn of(schema: Option<&Schema>, value: &Value) -> Option<Self> {
        if let Some(schema) = schema {
            return Some(Self::of_schema(schema));
        }
        match value {
            Value::Null => None,
            Value::Bytes(_) => Some(Self::Binary),
            Value::String(_) => Some(Self::Utf8),
            _ => Some(Self::Json),
        }
    }

    fn of_schema(schema: &Schema) -> Self {
        match (schema.kind, schema.name.as_deref()) {
            (SchemaType::Int32, Some(logical::DATE)) => Self::Date,
            (SchemaType::Int64, Some(logical::TIMESTAMP)) => Self::Timestamp,
            (_, Some(logical::DECIMAL | logical::TIME)) => Self::Json,
            (SchemaType::Bytes, _) => Self::Binary,
            (SchemaType::String, _) => Self::Utf8,
            (SchemaType::Boolean, _) => Self::Bool,
            (SchemaType::Int8, _) => Self::Int8,
            (SchemaType::Int16, _) => Self::Int16,
            (SchemaType::Int32, _) => Self::Int32,
            (SchemaType::Int64, _) => Self::Int64,
            (SchemaType::Float32, _) => Self::Float32,
            (SchemaType::Float64, _) => Self::Float64,
            (SchemaType::Struct, _) => Self::Struct(
                schema
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), Self::of_schema(&f.schema)))
                    .collect(),
            ),
            (SchemaType::Array | SchemaType::Map, _) => Self::Json,
        }
    }

    fn data_type(&self) -> DataType {
        match self {
            Self::Binary => DataType::Binary,
            Self::Utf8 | Self::Json => DataType::Utf8,
            Self::Bool => DataType::Boolean,
            Self::Int8 => DataType::Int8,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, None),
            Self::Struct(fields) => {
                DataType::Struct(fields.iter().map(|(n, k)| k.field(n)).collect())
            }
        }
    }

    fn field(&self, name: &str) -> ArrowField {
        let field = ArrowField::new(name, self.data_type(), true);
        if *self == Self::Json {
            field.with_metadata(HashMap::from([(
                JSON_FIELD_META.to_owned(),
                "true".to_owned(),
            )]))
        } else {
            field
        }
    }

    /// One column of `values` (rows that do not fit become errors, naming the column).
    fn array(&self, column: &str, values: &[&Value]) -> Result<ArrayRef> {
        let mismatch = |v: &Value| {
            Error::Data(format!(
                "Parquet column `{column}` holds {self:?} values; got {}",
                v.type_name()
            ))
        };
        macro_rules! ints {
            ($array:ty, $t:ty) => {{
                let items: Result<Vec<Option<$t>>> = values
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        v => v
                            .as_i64()
                            .and_then(|n| <$t>::try_from(n).ok())
                            .map(Some)
                            .ok_or_else(|| mismatch(v)),
                    })
                    .collect();
                Arc::new(<$array>::from(items?)) as ArrayRef
            }};
        }
        Ok(match self {
            Self::Binary => {
                let mut b = BinaryBuilder::new();
                for v in values {
                    match v {
                        Value::Null => b.append_null(),
                        Value::Bytes(x) => b.append_value(x),
                        Value::String(s) => b.append_value(s.as_bytes()),
                        v => return Err(mismatch(v)),
                    }
                }
                Arc::new(b.finish())
            }
            Self::Utf8 | Self::Json => {
                let mut b = StringBuilder::new();
                for v in values {
                    match (v, self) {
                        (Value::Null, _) => b.append_null(),
                        (Value::String(s), Self::Utf8) => b.append_value(s),
                        (v, Self::Json) => b.append_value(v.to_plain_json().to_string()),
                        (v, _) => return Err(mismatch(v)),
                    }
                }
                Arc::new(b.finish())
            }
            Self::Bool => Arc::new(
                values
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Boolean(b) => Ok(Some(*b)),
                        v => Err(mismatch(v)),
                    })
                    .collect::<Result<BooleanArray>>()?,
            ),
            Self::Int8 => ints!(Int8Array, i8),
            Self::Int16 => ints!(Int16Array, i16),
            Self::Int32 => ints!(Int32Array, i32),
            Self::Int64 => ints!(Int64Array, i64),
            Self::Date => {
                let items: Result<Vec<Option<i32>>> = values
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Date(d) | Value::Int32(d) => Ok(Some(*d)),
                        v => Err(mismatch(v)),
                    })
                    .collect();
                Arc::new(Date32Array::from(items?))
            }
            Self::Timestamp => {
                let items: Result<Vec<Option<i64>>> = values
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Timestamp(t) | Value::Int64(t) => Ok(Some(*t)),
                        v => Err(mismatch(v)),
                    })
                    .collect();
                Arc::new(TimestampMillisecondArray::from(items?))
            }
            Self::Float32 => {
                let items: Result<Vec<Option<f32>>> = values
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Float32(f) => Ok(Some(*f)),
                        v => Err(mismatch(v)),
                    })
                    .collect();
                Arc::new(Float32Array::from(items?))
            }
            Self::Float64 => {
                let items: Result<Vec<Option<f64>>> = values
                    .iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Float64(f) => Ok(Some(*f)),
                        Value::Float32(f) => Ok(Some(f64::from(*f))),
                        v => Err(mismatch(v)),
                    })
                    .collect();
                Arc::new(Float64Array::from(items?))
            }
            Self::Struct(fields) => {
                let null = Value::Null;
                let mut valid = Vec::with_capacity(values.len());
                for v in values {
                    match v {
                        Value::Null => valid.push(false),
                        Value::Struct(_) => valid.push(true),
                        v => return Err(mismatch(v)),
                    }
                }
                let mut children = Vec::with_capacity(fields.len());
                for (name, kind) in fields {
                    let column_values: Vec<&Value> = values
                        .iter()
                        .map(|v| match v {
                            Value::Struct(s) => s.get(name).unwrap_or(&null),
                            _ => &null,
                        })
                        .collect();
                    children.push(kind.array(&format!("{column}.{name}"), &column_values)?);
                }
                let arrow_fields: Fields = fields.iter().map(|(n, k)| k.field(n)).collect();
                Arc::new(StructArray::try_new(
                    arrow_fields,
                    children,
                    Some(valid.into()),
                )?)
            }
        })
    }
}

fn header_type() -> (ArrowField, Fields) {
    let fields = Fields::from(vec![
        ArrowField::new("key", DataType::Utf8, false),
        ArrowField::new("value", DataType::Binary, true),
    ]);
    let item = ArrowField::new("item", DataType::Struct(fields.clone()), false);
    (item, fields)
}

/// A Parquet file being written: one row per record, row groups bounded in memory.
pub(crate) struct ParquetEncoder {
    writer: ArrowWriter<Vec<u8>>,
    schema: Arc<ArrowSchema>,
    key: Option<Kind>,
    value: Option<Kind>,
    /// Flush a row group once it holds this many bytes in memory.
    row_group_bytes: usize,
}

impl ParquetEncoder {
    pub(crate) fn new(
        first: &SinkRecord,
        compression: Compression,
        row_group_bytes: usize,
    ) -> Result<Self> {
        let key = Kind::of(first.key_schema.as_deref(), &first.key);
        let value = Kind::of(first.value_schema.as_deref(), &first.value);
        let (header_item, _) = header_type();
        let schema = Arc::new(ArrowSchema::new(vec![
            ArrowField::new("topic", DataType::Utf8, false),
            ArrowField::new("partition", DataType::Int32, false),
            ArrowField::new("offset", DataType::Int64, false),
            ArrowField::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            ArrowField::new("headers", DataType::List(Arc::new(header_item)), false),
            key.clone().unwrap_or(Kind::Json).field("key"),
            value.clone().unwrap_or(Kind::Json).field("value"),
        ]));
        let codec = match compression {
            Compression::None => ParquetCodec::UNCOMPRESSED,
            Compression::Snappy => ParquetCodec::SNAPPY,
            Compression::Gzip => ParquetCodec::GZIP(GzipLevel::default()),
            Compression::Zstd => ParquetCodec::ZSTD(ZstdLevel::default()),
        };
        let props = WriterProperties::builder()
            .set_compression(codec)
            .set_max_row_group_row_count(Some(1_000_000))
            .build();
        let writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))?;
        Ok(Self {
            writer,
            schema,
            key,
            value,
            row_group_bytes,
        })
    }

    /// Whether `record` has the shape of this file's columns; a record that does not starts a
    /// new file (deterministically, so a rewrite after a crash makes the same files).
    pub(crate) fn fits(&self, record: &SinkRecord) -> bool {
        let fits = |have: &Option<Kind>, schema: Option<&Schema>, v: &Value| match (
            have,
            Kind::of(schema, v),
        ) {
            (_, None) => true,
            (None, Some(Kind::Json)) => true,
            (Some(have), Some(kind)) => *have == kind,
            (None, Some(_)) => false,
        };
        fits(&self.key, record.key_schema.as_deref(), &record.key)
            && fits(&self.value, record.value_schema.as_deref(), &record.value)
    }

    pub(crate) fn write(&mut self, records: &[SinkRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut topic = StringBuilder::new();
        let mut partition = Vec::with_capacity(records.len());
        let mut offset = Vec::with_capacity(records.len());
        let mut timestamp = Vec::with_capacity(records.len());
        let mut header_offsets = Vec::with_capacity(records.len() + 1);
        header_offsets.push(0i32);
        let mut header_keys = StringBuilder::new();
        let mut header_values = BinaryBuilder::new();
        for r in records {
            topic.append_value(&r.topic);
            partition.push(r.partition);
            offset.push(r.offset);
            timestamp.push(r.timestamp);
            for h in &r.headers {
                header_keys.append_value(&h.key);
                header_values.append_option(h.value.as_deref());
            }
            let last = *header_offsets.last().unwrap_or(&0);
            header_offsets.push(last + r.headers.len() as i32);
        }
        let (item, header_fields) = header_type();
        let header_struct = StructArray::try_new(
            header_fields,
            vec![
                Arc::new(header_keys.finish()) as ArrayRef,
                Arc::new(header_values.finish()),
            ],
            None,
        )?;
        let headers = ListArray::try_new(
            Arc::new(item),
            arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(header_offsets)),
            Arc::new(header_struct),
            None,
        )?;
        let keys: Vec<&Value> = records.iter().map(|r| &r.key).collect();
        let values: Vec<&Value> = records.iter().map(|r| &r.value).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(topic.finish()),
            Arc::new(Int32Array::from(partition)),
            Arc::new(Int64Array::from(offset)),
            Arc::new(TimestampMillisecondArray::from(timestamp).with_timezone("UTC")),
            Arc::new(headers),
            self.key.clone().unwrap_or(Kind::Json).array("key", &keys)?,
            self.value
                .clone()
                .unwrap_or(Kind::Json)
                .array("value", &values)?,
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.writer.write(&batch)?;
        if self.writer.in_progress_size() >= self.row_group_bytes {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// Bytes of the file written so far that can be uploaded.
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        self.writer.inner_mut()
    }

    pub(crate) fn finish(self) -> Result<Vec<u8>> {
        Ok(self.writer.into_inner()?)
    }
}

fn column<'a>(key: &str, batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::Corrupt {
        key: key.to_owned(),
        detail: format!("no `{name}` column"),
    })
}

/// The value of row `i` of an Arrow column as written by [`ParquetEncoder`].
fn arrow_value(field: &ArrowField, array: &dyn Array, i: usize) -> Value {
    if array.is_null(i) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::Binary => Value::Bytes(array.as_binary::<i32>().value(i).to_vec()),
        DataType::Utf8 => {
            let text = array.as_string::<i32>().value(i);
            if field
                .metadata()
                .get(JSON_FIELD_META)
                .is_some_and(|v| v == "true")
            {
                serde_json::from_str(text).map_or_else(
                    |_| Value::String(text.to_owned()),
                    |j| Value::from_plain_json(&j),
                )
            } else {
                Value::String(text.to_owned())
            }
        }
        DataType::Boolean => Value::Boolean(array.as_boolean().value(i)),
        DataType::Int8 => Value::Int8(array.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => Value::Int16(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => Value::Int32(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => Value::Int64(array.as_primitive::<Int64Type>().value(i)),
        DataType::Float32 => Value::Float32(array.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => Value::Float64(array.as_primitive::<Float64Type>().value(i)),
        DataType::Date32 => Value::Date(array.as_primitive::<Date32Type>().value(i)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            Value::Timestamp(array.as_primitive::<TimestampMillisecondType>().value(i))
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut out = Struct::with_capacity(fields.len());
            for (f, child) in fields.iter().zip(s.columns()) {
                out.push(f.name().clone(), arrow_value(f, child.as_ref(), i));
            }
            Value::Struct(out)
        }
        other => Value::String(format!("<unsupported {other}>")),
    }
}

fn read_parquet(key: &str, data: Bytes) -> Result<Vec<ArchivedRecord>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let schema = batch.schema();
        let field = |name: &str| schema.field_with_name(name).cloned();
        let (key_field, value_field) = (field("key")?, field("value")?);
        let topics: &StringArray = column(key, &batch, "topic")?.as_string::<i32>();
        let partitions = column(key, &batch, "partition")?.as_primitive::<Int32Type>();
        let offsets = column(key, &batch, "offset")?.as_primitive::<Int64Type>();
        let timestamps =
            column(key, &batch, "timestamp")?.as_primitive::<TimestampMillisecondType>();
        let headers = column(key, &batch, "headers")?.as_list::<i32>();
        let keys = column(key, &batch, "key")?;
        let values = column(key, &batch, "value")?;
        for i in 0..batch.num_rows() {
            let list = headers.value(i);
            let list = list.as_struct();
            let hk = list.column(0).as_string::<i32>();
            let hv: &BinaryArray = list.column(1).as_binary::<i32>();
            let headers = (0..list.len())
                .map(|j| Header {
                    key: hk.value(j).to_owned(),
                    value: (!hv.is_null(j)).then(|| hv.value(j).to_vec()),
                })
                .collect();
            out.push(ArchivedRecord {
                topic: topics.value(i).to_owned(),
                partition: partitions.value(i),
                offset: offsets.value(i),
                timestamp: (!timestamps.is_null(i)).then(|| timestamps.value(i)),
                headers,
                key: arrow_value(&key_field, keys.as_ref(), i),
                value: arrow_value(&value_field, values.as_ref(), i),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, value: Value, schema: Option<Schema>) -> SinkRecord {
        SinkRecord {
            topic: "t".into(),
            partition: 1,
            offset,
            key_schema: Some(Arc::new(Schema::bytes().optional())),
            key: Value::Bytes(vec![0, 255, b'k']),
            value_schema: schema.map(Arc::new),
            value,
            headers: vec![
                Header::new("h", vec![1u8, 2]),
                Header {
                    key: "n".into(),
                    value: None,
                },
            ],
            timestamp: Some(1_700_000_000_000 + offset),
        }
    }

    fn archived(r: &SinkRecord) -> ArchivedRecord {
        ArchivedRecord {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            headers: r.headers.clone(),
            key: r.key.clone(),
            value: r.value.clone(),
        }
    }

    #[test]
    fn json_lines_round_trip_bytes_and_headers() {
        let records = [
            record(
                5,
                Value::Bytes(b"{\"a\":1}".to_vec()),
                Some(Schema::bytes()),
            ),
            record(6, Value::Null, Some(Schema::bytes().optional())),
        ];
        let mut text = Vec::new();
        for r in &records {
            write_json_line(r, &mut text).unwrap();
        }
        let mut gz = Compressor::new(Compression::Gzip).unwrap();
        gz.write(&text).unwrap();
        let data = gz.finish().unwrap();
        let back = read_object("x/t+1+00000000000000000005.json.gz", Bytes::from(data)).unwrap();
        assert_eq!(back, records.iter().map(archived).collect::<Vec<_>>());
    }

    #[test]
    fn json_line_layout_is_stable() {
        let mut r = record(7, Value::from("v\"1"), Some(Schema::string()));
        r.key = Value::Bytes(vec![0xff, 0]);
        let mut line = Vec::new();
        write_json_line(&r, &mut line).unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            concat!(
                r#"{"topic":"t","partition":1,"offset":7,"timestamp":1700000000007,"#,
                r#""headers":[{"key":"h","value":"AQI="},{"key":"n","value":null}],"#,
                r#""key_base64":"/wA=","value":"v\"1"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn parquet_round_trips_structs_and_drains_output() {
        let schema = Schema::struct_builder()
            .field("id", Schema::int64())
            .field("name", Schema::string().optional())
            .field("at", Schema::timestamp())
            .build();
        let value = |n: i64| {
            Value::Struct(
                Struct::new()
                    .with("id", n)
                    .with(
                        "name",
                        if n % 2 == 0 {
                            Value::Null
                        } else {
                            Value::String(format!("n{n}"))
                        },
                    )
                    .with("at", Value::Timestamp(n * 1000)),
            )
        };
        let records: Vec<SinkRecord> = (0..10)
            .map(|n| record(n, value(n), Some(schema.clone())))
            .collect();
        let mut enc = ParquetEncoder::new(&records[0], Compression::Zstd, 1).unwrap();
        let mut file = Vec::new();
        for chunk in records.chunks(3) {
            assert!(chunk.iter().all(|r| enc.fits(r)));
            enc.write(chunk).unwrap();
            file.append(enc.output());
        }
        file.extend(enc.finish().unwrap());
        let back = read_object("t+1+00000000000000000000.parquet", Bytes::from(file)).unwrap();
        assert_eq!(back, records.iter().map(archived).collect::<Vec<_>>());
        // A schemaless string value does not fit a struct file.
        let enc = ParquetEncoder::new(&records[0], Compression::None, 1 << 20).unwrap();
        assert!(!enc.fits(&record(11, Value::String("x".into()), None)));
    }
}
