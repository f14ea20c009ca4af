//! Errors of `postgres-sink`, classified into the runtime's [`ErrorKind`]s. (The CDC source
//! reports [`ConnectorError`]s directly.)

use sluice_connector_api::{ConnectorError, ErrorKind};

/// What went wrong writing records to Postgres. Messages never include the password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A statement or the connection failed; the kind follows the SQLSTATE.
    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// One record cannot become a row (no key, a value that is not a struct or map, ...).
    #[error("{location}: {message}")]
    Record { location: String, message: String },
    /// A table does not fit the records and the config does not allow changing it.
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
    /// A record's topic does not give a valid table name.
    #[error("topic {topic}: {message}")]
    TableName { topic: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn database(context: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Database {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::Database { source, .. } => database_kind(source),
            Self::Record { .. } => ErrorKind::Data,
            Self::Table { .. } | Self::TableName { .. } => ErrorKind::Config,
        }
    }
}

/// Connection trouble, lock conflicts and server shutdowns are retried; rejected credentials
/// are `Auth`; values the database refuses (SQLSTATE classes 22, 23) are `Data`; missing
/// tables, columns or unique indexes (class 42) are `Config`.
fn database_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_) => ErrorKind::Retriable,
        sqlx::Error::Tls(_) => ErrorKind::Config,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if code.starts_with("28") => ErrorKind::Auth,
            Some(code)
                if code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("40")
                    || code.starts_with("53")
                    || code == "55P03" =>
            {
                ErrorKind::Retriable
            }
            Some(code) if code.starts_with("22") || code.starts_with("23") => ErrorKind::Data,
            Some(code) if code.starts_with("42") || code.starts_with("3F") => ErrorKind::Config,
            _ => ErrorKind::Fatal,
        },
        _ => ErrorKind::Fatal,
    }
}

impl From<Error> for ConnectorError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        ConnectorError::with_source(kind, message, e)
    }
}
