//! What a task does with a record it cannot handle: Kafka Connect's `errors.*` settings.
//! `tolerance: none` (the default) fails the task with the reason; `all` skips the record,
//! logging it when asked and writing it to the dead-letter topic when one is configured, with
//! headers naming where it came from and what went wrong (`__connect.errors.*`).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorError, ErrantRecordReporter, ErrorKind, FieldKind, Header,
    Result as ConnectorResult, SinkRecord, Validator, Value,
};
use tracing::warn;

use crate::convert::Converter;
use crate::error::TaskError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tolerance {
    #[default]
    None,
    All,
}

/// A pipeline's `errors` block.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ErrorPolicy {
    pub tolerance: Tolerance,
    /// How long a failing record operation is retried (ms); 0 retries nothing, except a sink's
    /// transiently refused `put`, which is then retried until the task stops.
    pub retry_timeout: u64,
    /// Longest wait between retries (ms).
    pub retry_delay_max: u64,
    /// Log every skipped record.
    pub log: bool,
    /// With `log`: include the record's key and value (never for secrets' sake by default).
    pub log_include_messages: bool,
    /// Sinks: the dead-letter topic for records that cannot be converted, transformed or written
    /// (those the sink task reports).
    pub dlq_topic: Option<String>,
    /// Add `__connect.errors.*` headers to dead-letter records.
    pub dlq_context_headers: bool,
}

pub fn errors_spec() -> ConfigSpec {
    ConfigSpec::new()
        .optional(
            "tolerance",
            FieldKind::String,
            "none",
            "none: a bad record fails the task; all: it is skipped (and dead-lettered).",
        )
        .check(Validator::one_of(["none", "all"]))
        .optional(
            "retry_timeout",
            FieldKind::Duration,
            0,
            "How long a failed record operation is retried before it counts as failed. For a sink's put refused for a transient reason: how long before the task fails (0: retry until stopped, as Kafka Connect does).",
        )
        .optional(
            "retry_delay_max",
            FieldKind::Duration,
            60_000,
            "Longest wait between two retries (exponential backoff up to this).",
        )
        .optional(
            "log",
            FieldKind::Bool,
            false,
            "Log every record that fails.",
        )
        .optional(
            "log_include_messages",
            FieldKind::Bool,
            false,
            "With log: include the record's key and value in the log line.",
        )
        .maybe(
            "dlq_topic",
            FieldKind::String,
            "Sinks: dead-letter topic for records that cannot be converted or transformed, or that the sink reports it cannot write (stage TASK_PUT).",
        )
        .check(Validator::NonEmpty)
        .optional(
            "dlq_context_headers",
            FieldKind::Bool,
            true,
            "Add __connect.errors.* headers (origin, stage, error) to dead-letter records.",
        )
}

/// Where in the pipeline a record failed (Kafka Connect's stage names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    KeyConverter,
    ValueConverter,
    Transformation,
    /// The sink task refused the record ([`SinkReporter`]).
    TaskPut,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::KeyConverter => "KEY_CONVERTER",
            Stage::ValueConverter => "VALUE_CONVERTER",
            Stage::Transformation => "TRANSFORMATION",
            Stage::TaskPut => "TASK_PUT",
        }
    }
}

/// A record that could not be handled, with its original bytes (a consumed record) or its
/// plain JSON form (a source record that could not be converted). Sources have no partition or
/// offset in Kafka yet: `partition` is -1 and `offset` -1 then.
pub(crate) struct Failed {
    pub stage: Stage,
    pub error: TaskError,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    pub timestamp: Option<i64>,
}

/// Applies a pipeline's error policy to failed records.
pub(crate) struct ErrorHandler {
    pub policy: ErrorPolicy,
    pub connector: String,
    pub task_id: u32,
    /// Present when the policy names a dead-letter topic.
    pub dlq: Option<FutureProducer>,
    /// The task's counters (errors, skipped records, dead-letter requests).
    pub metrics: Arc<crate::metrics::TaskMetrics>,
}

impl ErrorHandler {
    /// Deals with one failed record: `Err` (the task fails) unless the policy tolerates it, in
    /// which case it is logged and dead-lettered as configured before this returns, so the
    /// caller may move past it.
    pub(crate) async fn handle(&self, failed: Failed) -> Result<(), TaskError> {
        // A plugin that trapped or hit a limit fails the task whatever the policy.
        self.metrics.record_errors.inc();
        if self.policy.tolerance == Tolerance::None || failed.error.is_fatal() {
            self.metrics.record_failures.inc();
            return Err(failed.error);
        }
        self.metrics.records_skipped.inc();
        if self.policy.log {
            let location = format!(
                "{}-{} offset {}",
                failed.topic, failed.partition, failed.offset
            );
            if self.policy.log_include_messages {
                let text = |b: &Option<Vec<u8>>| {
                    b.as_deref()
                        .map(String::from_utf8_lossy)
                        .map(|s| s.into_owned())
                };
                warn!(connector = %self.connector, task = self.task_id, stage = failed.stage.name(), %location,
                      key = ?text(&failed.key), value = ?text(&failed.value), error = %failed.error, "skipping a record that failed");
            } else {
                warn!(connector = %self.connector, task = self.task_id, stage = failed.stage.name(), %location,
                      error = %failed.error, "skipping a record that failed");
            }
        }
        let (Some(producer), Some(topic)) = (&self.dlq, &self.policy.dlq_topic) else {
            return Ok(());
        };
        let mut headers = failed.headers.iter().fold(OwnedHeaders::new(), |hs, h| {
            hs.insert(KafkaHeader {
                key: &h.key,
                value: h.value.as_deref(),
            })
        });
        if self.policy.dlq_context_headers {
            let error = failed.error.to_string();
            let context = [
                ("__connect.errors.topic", failed.topic.clone()),
                ("__connect.errors.partition", failed.partition.to_string()),
                ("__connect.errors.offset", failed.offset.to_string()),
                ("__connect.errors.connector.name", self.connector.clone()),
                ("__connect.errors.task.id", self.task_id.to_string()),
                ("__connect.errors.stage", failed.stage.name().to_owned()),
                (
                    "__connect.errors.class.name",
                    error_class(&failed.error).to_owned(),
                ),
                (
                    "__connect.errors.exception.class.name",
                    error_class(&failed.error).to_owned(),
                ),
                ("__connect.errors.exception.message", error.clone()),
                (
                    "__connect.errors.exception.stacktrace",
                    json!([error]).to_string(),
                ),
            ];
            for (key, value) in &context {
                headers = headers.insert(KafkaHeader {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = &failed.key {
            record = record.key(key);
        }
        if let Some(value) = &failed.value {
            record = record.payload(value);
        }
        if let Some(ts) = failed.timestamp {
            record = record.timestamp(ts);
        }
        // Awaited: the record's offset may be committed only once the dead-letter copy is durable.
        self.metrics.dlq_requests.inc();
        producer
            .send(record, Duration::from_secs(60))
            .await
            .map(drop)
            .map_err(|(source, _)| {
                self.metrics.dlq_failures.inc();
                source
            })
            .map_err(|source| TaskError::Delivery {
                topic: topic.clone(),
                source,
            })
    }
}

/// The runtime's [`ErrantRecordReporter`] for a sink task: records the task refuses go through
/// the same error policy and dead-letter topic as records that fail conversion, with stage
/// `TASK_PUT`. The dead-letter copy is the record as the task saw it (after transforms), encoded
/// again with the connector's converters, as Kafka Connect does for records it re-serializes.
pub(crate) struct SinkReporter {
    pub errors: Arc<ErrorHandler>,
    pub key_converter: Arc<dyn Converter>,
    pub value_converter: Arc<dyn Converter>,
}

#[async_trait::async_trait]
impl ErrantRecordReporter for SinkReporter {
    async fn report(&self, record: &SinkRecord, error: ConnectorError) -> ConnectorResult<()> {
        // Refused as it is: the task fails with the sink's own reason.
        if self.errors.policy.tolerance == Tolerance::None {
            return Err(error);
        }
        // A value the converter cannot write again still reaches the dead-letter topic, as
        // plain JSON.
        let encode = |converter: &Arc<dyn Converter>, schema, value: &Value| {
            converter
                .encode_shared(schema, value)
                .unwrap_or_else(|_| Some(value.to_plain_json().to_string().into_bytes()))
        };
        let failed = Failed {
            stage: Stage::TaskPut,
            error: TaskError::Connector {
                stage: "put",
                source: error,
            },
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
            key: encode(&self.key_converter, record.key_schema.as_ref(), &record.key),
            value: encode(
                &self.value_converter,
                record.value_schema.as_ref(),
                &record.value,
            ),
            headers: record.headers.clone(),
            timestamp: record.timestamp,
        };
        let location = format!(
            "{}-{} offset {}",
            record.topic, record.partition, record.offset
        );
        self.errors.handle(failed).await.map_err(|e| {
            ConnectorError::with_source(
                ErrorKind::Fatal,
                format!("cannot dead-letter the record at {location}: {e}"),
                e,
            )
        })
    }
}

fn error_class(error: &TaskError) -> &'static str {
    match error {
        TaskError::Convert { .. } => "sluice.ConvertError",
        TaskError::Connector { .. } => "sluice.ConnectorError",
        _ => "sluice.TaskError",
    }
}
