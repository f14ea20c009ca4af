//! Errors of `http-sink`, classified into the runtime's [`ErrorKind`]s.

use sluice_connector_api::{ConnectorError, ErrorKind};

/// What went wrong sending records over HTTP. Messages name the method and the URL without its
/// user info or query (where credentials could hide) and never include secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `url` template is not an http(s) URL or uses an unknown placeholder.
    #[error("{0}")]
    Url(String),
    /// A TLS file could not be read or parsed.
    #[error("config.{field}: cannot use `{path}`: {detail}")]
    Tls {
        field: &'static str,
        path: String,
        detail: String,
    },
    /// The HTTP client could not be built from the config.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The server refused the record for good (a 4xx other than 401, 403, 407, 408 and 429).
    #[error("HTTP {status} from {method} {url} for {location}: {body}")]
    Rejected {
        status: u16,
        method: String,
        url: String,
        location: String,
        body: String,
    },
    /// The request could not even be built (a templated URL that does not parse).
    #[error("cannot send {location} to {url}: {detail}")]
    Unsendable {
        url: String,
        location: String,
        detail: String,
    },
    /// The server refused the credentials (401, 403 or 407); every record would fail alike.
    #[error("HTTP {status} from {method} {url}: {body}; check auth_type and its credentials")]
    Unauthorized {
        status: u16,
        method: String,
        url: String,
        body: String,
    },
    /// `retry_max_attempts` requests failed with retriable errors.
    #[error(
        "{method} {url} failed {attempts} times, last: {last}; the task stops (records not acknowledged are delivered again on restart)"
    )]
    GaveUp {
        method: String,
        url: String,
        attempts: u32,
        last: String,
    },
    /// The task is stopping; records not yet acknowledged are delivered again.
    #[error("http-sink task stopping")]
    Stopping,
    /// A sending lane ended unexpectedly.
    #[error("an http-sink sending lane ended unexpectedly")]
    LaneGone,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::Url(_) | Self::Tls { .. } | Self::Client(_) => ErrorKind::Config,
            Self::Rejected { .. } | Self::Unsendable { .. } => ErrorKind::Data,
            Self::Unauthorized { .. } => ErrorKind::Auth,
            Self::Stopping => ErrorKind::Retriable,
            Self::GaveUp { .. } | Self::LaneGone => ErrorKind::Fatal,
        }
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        ConnectorError::with_source(kind, message, e)
    }
}
