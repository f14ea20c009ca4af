//! Why a plugin could not be loaded or a call into it failed.

use std::path::PathBuf;
use std::time::Duration;

use sluice_connector_api::{ConnectorError, ErrorKind};

/// A plugin failed to load, or a call into one failed. Messages name the plugin (and the call),
/// e.g. "plugin loop: call `apply` exceeded the 5s time limit".
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not a component, or not one built for this host (compilation failed).
    #[error("plugin {plugin}: not a valid WebAssembly component: {reason}")]
    Compile { plugin: String, reason: String },
    /// The component exports none of the `sluice:connector` interfaces this host knows.
    #[error(
        "plugin {plugin}: exports none of sluice:connector/source-task, sink-task or transformer @0.2.x (it exports: {exports})"
    )]
    NotAPlugin { plugin: String, exports: String },
    /// The component imports something the sandbox does not offer.
    #[error("plugin {plugin}: cannot be instantiated: {reason}")]
    Instantiate { plugin: String, reason: String },
    #[error("plugin {plugin}: is a {found} plugin; expected a {expected} plugin")]
    WrongKind {
        plugin: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("plugin {plugin}: exceeded the {limit_mib} MiB memory limit in call `{call}`")]
    Memory {
        plugin: String,
        call: &'static str,
        limit_mib: u64,
    },
    #[error("plugin {plugin}: call `{call}` exceeded the {} time limit", humanize(*.limit))]
    Timeout {
        plugin: String,
        call: &'static str,
        limit: Duration,
    },
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access...).
    #[error("plugin {plugin}: call `{call}` trapped: {reason}")]
    Trap {
        plugin: String,
        call: &'static str,
        reason: String,
    },
    /// The guest returned an error of its own.
    #[error("plugin {plugin}: {kind} error in `{call}`: {message}")]
    Guest {
        plugin: String,
        call: &'static str,
        kind: ErrorKind,
        message: String,
    },
    /// The guest broke the contract (e.g. returned a batch of the wrong length, bad offset JSON).
    #[error("plugin {plugin}: {message}")]
    Contract { plugin: String, message: String },
    /// A previous call failed and left the instance unusable.
    #[error("plugin {plugin}: the instance failed earlier and cannot be used")]
    Poisoned { plugin: String },
    /// The engine could not be created (cache directory, configuration).
    #[error("the WebAssembly engine cannot start: {0}")]
    Engine(String),
}

fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl WasmError {
    /// How the runtime treats the failure: a guest error keeps the kind the guest gave it; traps,
    /// limits and broken contracts are fatal to the task (the instance is gone).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Guest { kind, .. } => *kind,
            Self::Read { .. }
            | Self::Compile { .. }
            | Self::NotAPlugin { .. }
            | Self::WrongKind { .. } => ErrorKind::Config,
            _ => ErrorKind::Fatal,
        }
    }
}

impl From<WasmError> for ConnectorError {
    fn from(e: WasmError) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        ConnectorError::with_source(kind, message, e)
    }
}

pub type Result<T, E = WasmError> = std::result::Result<T, E>;
