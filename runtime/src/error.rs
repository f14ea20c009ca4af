use rdkafka::error::KafkaError;
use sluice_connector_api::ConnectorError;

use crate::config::Problem;
use crate::convert::ConvertError;
use crate::storage::StorageError;

/// Why the runtime could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<Problem>),
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("connector {connector}: {source}")]
    Connector {
        connector: String,
        #[source]
        source: ConnectorError,
    },
    #[error("cannot serve the REST API on {listen}: {source}")]
    Rest {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    KafkaSecurity(#[from] crate::kafka::SecurityFailure),
    #[error("cannot serve the REST API: {0}")]
    RestSecurity(#[from] crate::rest::SecurityError),
    #[error("connector {connector} failed to start: {trace}")]
    ConnectorFailed { connector: String, trace: String },
    #[error("every task failed; see the errors above")]
    AllTasksFailed,
    #[error("worker group membership: {0}")]
    Membership(String),
}

/// Why a task stopped with a failure. The message is what its status shows.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{stage} failed ({kind} error): {source}", kind = .source.kind())]
    Connector {
        stage: &'static str,
        #[source]
        source: ConnectorError,
    },
    #[error("{stage} kept failing for {waited:?}, longer than errors.retry_timeout: {source}")]
    RetriesExhausted {
        stage: &'static str,
        waited: std::time::Duration,
        #[source]
        source: ConnectorError,
    },
    #[error("cannot convert the {part} of {location}: {source}")]
    Convert {
        part: &'static str,
        location: String,
        #[source]
        source: ConvertError,
    },
    #[error("cannot transform {location}: {source}")]
    Transform {
        location: String,
        #[source]
        source: Box<crate::transform::TransformError>,
    },
    #[error("Kafka did not accept a record for {topic}: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("offset storage: {0}")]
    Storage(#[from] StorageError),
    #[error("sink config: {0}")]
    Config(String),
    #[error("internal: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The task's code panicked: a bug, in a connector or in the runtime. Restarted by policy,
    /// as an unexpected exception is in Kafka Connect.
    #[error("the task panicked: {0}")]
    Panicked(String),
}

impl TaskError {
    pub(crate) fn connector(stage: &'static str) -> impl FnOnce(ConnectorError) -> Self {
        move |source| Self::Connector { stage, source }
    }

    /// Whether restarting the task may help: not for a record it cannot handle under
    /// `errors.tolerance: none` or a config mistake (it would fail the same way again).
    pub(crate) fn is_restartable(&self) -> bool {
        use sluice_connector_api::ErrorKind;
        match self {
            Self::Connector { source, .. } | Self::RetriesExhausted { source, .. } => {
                !matches!(source.kind(), ErrorKind::Data | ErrorKind::Config)
            }
            Self::Delivery { .. }
            | Self::Kafka(_)
            | Self::Storage(_)
            | Self::Join(_)
            | Self::Panicked(_) => true,
            Self::Convert { .. } | Self::Transform { .. } | Self::Config(_) => false,
        }
    }

    /// A failure no error policy may tolerate: a WASM transform that trapped, hit a limit or
    /// failed fatally (its instance is gone).
    pub(crate) fn is_fatal(&self) -> bool {
        matches!(self, Self::Transform { source, .. } if source.kind() == sluice_connector_api::ErrorKind::Fatal)
    }
}
