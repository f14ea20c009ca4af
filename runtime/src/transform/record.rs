//! The record a transform chain works on, and its conversions from and to the runtime's records.

use sluice_connector_api::{
    Header, SchemaRef, SinkRecord, SourceOffset, SourcePartition, SourceRecord, TopicPartition,
    Value,
};

/// A record as transforms see it: what Kafka Connect's `ConnectRecord` holds. The source
/// partition/offset of a source record and the consumed position of a sink record are not part of
/// it: the task loops carry them alongside, because transforms may rename the topic or drop the
/// record but must not change what is committed.
#[derive(Debug, Clone, PartialEq)]
pub struct TransformRecord {
    pub topic: String,
    /// Kafka partition; `None` lets the producer's partitioner choose (source records).
    pub partition: Option<i32>,
    pub key_schema: Option<SchemaRef>,
    pub key: Value,
    pub value_schema: Option<SchemaRef>,
    pub value: Value,
    /// Headers in order; a key may repeat. Values are raw bytes, as on the wire.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// The Kafka offset of a consumed (sink) record, read by InsertField's `offset.field`;
    /// `None` for source records. Changing it has no effect on what is committed.
    pub kafka_offset: Option<i64>,
}

impl TransformRecord {
    /// A schemaless record with a value only; set the other fields directly.
    pub fn new(topic: impl Into<String>, value_schema: Option<SchemaRef>, value: Value) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key_schema: None,
            key: Value::Null,
            value_schema,
            value,
            headers: Vec::new(),
            timestamp: None,
            kafka_offset: None,
        }
    }

    pub fn with_key(mut self, key_schema: Option<SchemaRef>, key: Value) -> Self {
        self.key_schema = key_schema;
        self.key = key;
        self
    }

    /// Splits a source record into what transforms see and its source partition and offset.
    pub fn from_source(record: SourceRecord) -> (Self, SourcePartition, SourceOffset) {
        let SourceRecord {
            topic,
            partition,
            key_schema,
            key,
            value_schema,
            value,
            headers,
            timestamp,
            source_partition,
            source_offset,
        } = record;
        let record = Self {
            topic,
            partition,
            key_schema,
            key,
            value_schema,
            value,
            headers,
            timestamp,
            kafka_offset: None,
        };
        (record, source_partition, source_offset)
    }

    /// Joins a transformed record with the source partition and offset it was read at.
    pub fn into_source(
        self,
        source_partition: SourcePartition,
        source_offset: SourceOffset,
    ) -> SourceRecord {
        SourceRecord {
            topic: self.topic,
            partition: self.partition,
            key_schema: self.key_schema,
            key: self.key,
            value_schema: self.value_schema,
            value: self.value,
            headers: self.headers,
            timestamp: self.timestamp,
            source_partition,
            source_offset,
        }
    }

    /// A consumed record as transforms see it. Keep `record.topic_partition()` and
    /// `record.offset` beside it: offsets are committed for what was consumed, whatever topic
    /// the transforms route the record to.
    pub fn from_sink(record: SinkRecord) -> Self {
        Self {
            topic: record.topic,
            partition: Some(record.partition),
            key_schema: record.key_schema,
            key: record.key,
            value_schema: record.value_schema,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp,
            kafka_offset: Some(record.offset),
        }
    }

    /// The sink record handed to the task; `consumed` and `offset` are where it was read, used
    /// for the partition when a transform cleared it and for the offset.
    pub fn into_sink(self, consumed: &TopicPartition, offset: i64) -> SinkRecord {
        SinkRecord {
            topic: self.topic,
            partition: self.partition.unwrap_or(consumed.partition),
            offset,
            key_schema: self.key_schema,
            key: self.key,
            value_schema: self.value_schema,
            value: self.value,
            headers: self.headers,
            timestamp: self.timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_connector_api::Schema;
    use std::sync::Arc;

    #[test]
    fn source_records_round_trip_with_their_offsets() {
        let partition = json!({"file": "a"}).as_object().unwrap().clone();
        let offset = json!({"pos": 3}).as_object().unwrap().clone();
        let mut source = SourceRecord::new(
            "t",
            Some(Arc::new(Schema::string())),
            Value::from("v"),
            partition.clone(),
            offset.clone(),
        )
        .with_key(None, Value::from("k"));
        source.headers.push(Header::new("h", "1"));
        source.timestamp = Some(5);
        let (record, p, o) = TransformRecord::from_source(source.clone());
        assert_eq!(record.key, Value::from("k"));
        assert_eq!(record.kafka_offset, None);
        assert_eq!(record.into_source(p, o), source);
    }

    #[test]
    fn sink_records_keep_the_consumed_offset() {
        let sink = SinkRecord {
            topic: "t".into(),
            partition: 2,
            offset: 9,
            key_schema: None,
            key: Value::Null,
            value_schema: None,
            value: Value::from(1i32),
            headers: vec![],
            timestamp: Some(1),
        };
        let tp = sink.topic_partition();
        let mut record = TransformRecord::from_sink(sink.clone());
        assert_eq!(record.kafka_offset, Some(9));
        assert_eq!(record.partition, Some(2));
        record.topic = "renamed".into();
        record.partition = None;
        let back = record.into_sink(&tp, 9);
        assert_eq!(back.topic, "renamed");
        assert_eq!(back.partition, 2);
        assert_eq!(back.offset, 9);
    }
}
