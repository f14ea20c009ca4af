//! Where an archived record goes: partitioners (directory of a record) and object names.
//!
//! An object is named `<topics_dir>/<topic>/<encoded partition>/<topic>+<kafka partition>+<start
//! offset>.<ext>`, the start offset zero-padded to 20 digits so names sort by offset. A file
//! rewritten after a crash starts at the same offset, so it replaces its earlier copy.

use chrono::{DateTime, Datelike, TimeZone, Timelike};
use chrono_tz::Tz;
use sluice_connector_api::{SinkRecord, Value};

use crate::config::{PartitionerKind, SinkConfig, TimestampSource};
use crate::error::{Error, Result};

/// One piece of a time `path_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// A parsed time `path_format` such as `'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH` (the Joda
/// letters Kafka Connect's TimeBasedPartitioner uses; text in single quotes is literal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathFormat(Vec<Piece>);

impl PathFormat {
    pub fn parse(format: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '\'' {
                        closed = true;
                        break;
                    }
                    literal.push(q);
                }
                if !closed {
                    return Err(format!("unclosed quote in `{format}`"));
                }
                continue;
            }
            if c.is_ascii_alphabetic() {
                let mut run = c.to_string();
                while chars.peek() == Some(&c) {
                    run.push(c);
                    chars.next();
                }
                let piece = match run.as_str() {
                    "YYYY" | "yyyy" => Piece::Year,
                    "MM" => Piece::Month,
                    "dd" => Piece::Day,
                    "HH" => Piece::Hour,
                    "mm" => Piece::Minute,
                    "ss" => Piece::Second,
                    other => {
                        return Err(format!(
                            "unknown pattern `{other}` in `{format}`; expected YYYY, MM, dd, HH, mm, ss or text in single quotes"
                        ));
                    }
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(piece);
                continue;
            }
            literal.push(c);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self(pieces))
    }

    pub fn format(&self, time: &DateTime<Tz>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Year => out.push_str(&format!("{:04}", time.year())),
                Piece::Month => out.push_str(&format!("{:02}", time.month())),
                Piece::Day => out.push_str(&format!("{:02}", time.day())),
                Piece::Hour => out.push_str(&format!("{:02}", time.hour())),
                Piece::Minute => out.push_str(&format!("{:02}", time.minute())),
                Piece::Second => out.push_str(&format!("{:02}", time.second())),
            }
        }
        out
    }
}

/// Chooses the directory (below `<topics_dir>/<topic>/`) of each record.
#[derive(Debug, Clone)]
pub(crate) enum Partitioner {
    Default,
    Field(Vec<String>),
    Time {
        format: PathFormat,
        zone: Tz,
        source: TimestampSource,
    },
}

impl Partitioner {
    pub(crate) fn from_config(config: &SinkConfig) -> Result<Self> {
        Ok(match config.partitioner {
            PartitionerKind::Default => Self::Default,
            PartitionerKind::Field => Self::Field(config.partition_fields.clone()),
            PartitionerKind::Time => Self::Time {
                format: PathFormat::parse(&config.path_format)
                    .map_err(|e| Error::Config(format!("config.path_format: {e}")))?,
                zone: parse_zone(&config.timezone)?,
                source: config.timestamp_source,
            },
        })
    }

    /// The encoded partition of `record`, e.g. `partition=3` or `year=2024/month=05`.
    pub(crate) fn encode(&self, record: &SinkRecord, now_ms: i64) -> Result<String> {
        match self {
            Self::Default => Ok(format!("partition={}", record.partition)),
            Self::Field(fields) => {
                let Value::Struct(value) = &record.value else {
                    return Err(Error::Data(format!(
                        "the field partitioner needs a struct value; {}-{} offset {} has {}",
                        record.topic,
                        record.partition,
                        record.offset,
                        record.value.type_name()
                    )));
                };
                let mut parts = Vec::with_capacity(fields.len());
                for field in fields {
                    let text = match value.get(field) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => "null".to_owned(),
                        Some(
                            Value::Struct(_) | Value::Array(_) | Value::Map(_) | Value::Bytes(_),
                        ) => {
                            return Err(Error::Data(format!(
                                "partition field `{field}` of {}-{} offset {} is not a primitive",
                                record.topic, record.partition, record.offset
                            )));
                        }
                        Some(other) => other.to_plain_json().to_string(),
                    };
                    parts.push(format!("{field}={}", sanitize(&text)));
                }
                Ok(parts.join("/"))
            }
            Self::Time {
                format,
                zone,
                source,
            } => {
                let ms = match source {
                    TimestampSource::Record => record.timestamp.ok_or_else(|| {
                        Error::Data(format!(
                            "{}-{} offset {} has no timestamp for the time partitioner (timestamp_source: record)",
                            record.topic, record.partition, record.offset
                        ))
                    })?,
                    TimestampSource::Wallclock => now_ms,
                };
                let time = zone
                    .timestamp_millis_opt(ms)
                    .single()
                    .ok_or_else(|| Error::Data(format!("timestamp {ms} is out of range")))?;
                Ok(format.format(&time))
            }
        }
    }
}

pub(crate) fn parse_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::Config(format!(
            "config.timezone: expected an IANA time zone such as UTC or Europe/Berlin, got \"{name}\""
        ))
    })
}

/// A path segment cannot hold `/`; keep field values readable otherwise.
fn sanitize(text: &str) -> String {
    text.replace('/', "%2F")
}

/// The object key of a file.
pub(crate) fn object_key(
    topics_dir: &str,
    topic: &str,
    encoded: &str,
    partition: i32,
    start_offset: i64,
    extension: &str,
) -> String {
    format!(
        "{}/{topic}/{encoded}/{topic}+{partition}+{start_offset:020}.{extension}",
        topics_dir.trim_end_matches('/')
    )
}

/// The prefix under which every object of `topic` lives.
pub(crate) fn topic_prefix(topics_dir: &str, topic: &str) -> String {
    format!("{}/{topic}/", topics_dir.trim_end_matches('/'))
}

/// Topic, Kafka partition, start offset and extension of an archived object's key, if it is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectName {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) start_offset: i64,
    pub(crate) extension: String,
}

pub(crate) fn parse_object_key(key: &str) -> Option<ObjectName> {
    let file = key.rsplit('/').next()?;
    // Topic names may contain `+`? Kafka allows only [a-zA-Z0-9._-], so `+` separates safely.
    let mut parts = file.splitn(3, '+');
    let topic = parts.next()?;
    let partition = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let (offset, extension) = rest.split_once('.')?;
    if offset.len() != 20 {
        return None;
    }
    Some(ObjectName {
        topic: topic.to_owned(),
        partition,
        start_offset: offset.parse().ok()?,
        extension: extension.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_format_uses_joda_letters_and_quotes() {
        let f = PathFormat::parse("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH").unwrap();
        let zone: Tz = "UTC".parse().unwrap();
        // 2024-02-29T13:45:00Z
        let t = zone.timestamp_millis_opt(1_709_214_300_000).unwrap();
        assert_eq!(f.format(&t), "year=2024/month=02/day=29/hour=13");
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = berlin.timestamp_millis_opt(1_709_214_300_000).unwrap();
        assert_eq!(f.format(&t), "year=2024/month=02/day=29/hour=14");
        assert!(PathFormat::parse("YYYY/QQ").unwrap_err().contains("QQ"));
        assert!(
            PathFormat::parse("'year=YYYY")
                .unwrap_err()
                .contains("unclosed")
        );
    }

    #[test]
    fn object_keys_round_trip() {
        let key = object_key("topics/", "orders", "partition=2", 2, 42, "json.gz");
        assert_eq!(
            key,
            "topics/orders/partition=2/orders+2+00000000000000000042.json.gz"
        );
        assert_eq!(
            parse_object_key(&key),
            Some(ObjectName {
                topic: "orders".into(),
                partition: 2,
                start_offset: 42,
                extension: "json.gz".into()
            })
        );
        assert_eq!(
            parse_object_key("topics/orders/partition=2/notes.txt"),
            None
        );
    }
}
