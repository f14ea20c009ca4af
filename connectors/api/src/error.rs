use std::fmt;

/// What kind of failure a connector error is. The runtime maps the kind to a policy in one place:
/// retriable errors are retried with backoff, data errors go to the dead-letter topic or fail the
/// task, configuration, auth and fatal errors fail the task at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A transient condition (network, broker or database unavailable); retry may succeed.
    Retriable,
    /// One record cannot be handled (bad shape, wrong type); other records may still be fine.
    Data,
    /// The configuration is wrong; nothing will work until it is changed.
    Config,
    /// Credentials are missing or rejected.
    Auth,
    /// Anything else that stops the task.
    Fatal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Retriable => "retriable",
            Self::Data => "data",
            Self::Config => "config",
            Self::Auth => "auth",
            Self::Fatal => "fatal",
        })
    }
}

/// An error raised by a connector or task.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ConnectorError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn retriable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retriable, message)
    }

    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }

    /// An I/O error classified by its kind: interruptions and timeouts are retriable, the rest fatal.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match err.kind() {
            Io::Interrupted | Io::TimedOut | Io::WouldBlock => ErrorKind::Retriable,
            Io::PermissionDenied => ErrorKind::Auth,
            _ => ErrorKind::Fatal,
        };
        let context = context.into();
        Self::with_source(kind, format!("{context}: {err}"), err)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;
