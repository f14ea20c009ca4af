//! Errors of the S3 connectors, classified into the runtime's [`ErrorKind`]s.

use sluice_connector_api::{ConnectorError, ErrorKind};

/// What went wrong talking to S3 or encoding an archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bucket does not exist (or the endpoint/region points elsewhere).
    #[error(
        "bucket `{bucket}` does not exist (config.bucket); create it or fix bucket/endpoint/region"
    )]
    NoSuchBucket { bucket: String },
    /// The credentials were rejected or lack a permission.
    #[error(
        "access denied by S3 during {operation} on bucket `{bucket}`: {detail}; check access_key_id/secret_access_key or the AWS credential chain and the bucket policy"
    )]
    AccessDenied {
        operation: &'static str,
        bucket: String,
        detail: String,
    },
    /// A request still failed after the SDK's retries (server errors, throttling, timeouts,
    /// connection refused): S3 is away for now.
    #[error("S3 {operation} of `{key}` failed (up to {attempts} attempts): {detail}")]
    Unavailable {
        operation: &'static str,
        key: String,
        attempts: u32,
        detail: String,
    },
    /// A request S3 answered with an error that retrying will not fix.
    #[error("S3 {operation} of `{key}` failed: {detail}")]
    Request {
        operation: &'static str,
        key: String,
        detail: String,
    },
    /// Parquet or Arrow refused the data.
    #[error("cannot encode or decode Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot build Arrow data: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Compression or decompression failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// An archived object that is not what `s3-sink` writes.
    #[error("object `{key}` is not a valid archive: {detail}")]
    Corrupt { key: String, detail: String },
    /// A record that the chosen format or partitioner cannot hold.
    #[error("{0}")]
    Data(String),
    /// A configuration that passed the field checks but does not fit together.
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::NoSuchBucket { .. } | Self::Config(_) => ErrorKind::Config,
            Self::AccessDenied { .. } => ErrorKind::Auth,
            Self::Unavailable { .. } => ErrorKind::Retriable,
            Self::Data(_) => ErrorKind::Data,
            Self::Request { .. }
            | Self::Parquet(_)
            | Self::Arrow(_)
            | Self::Io { .. }
            | Self::Corrupt { .. } => ErrorKind::Fatal,
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
