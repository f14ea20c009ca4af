//! Transform plugins: a pool of instances shared by the tasks of a connector (one per task
//! calling at the same time), each opened with the transform's config.

use std::sync::{Arc, Mutex};

use sluice_connector_api::ConnectorConfig;

use crate::bindings::transform::Transform;
use crate::engine::{LoadedPlugin, PluginKind};
use crate::error::{Result, WasmError};
use crate::record::{Batch, Results, count};
use crate::sandbox::Sandbox;
use crate::session::{Context, Session};
use crate::spec::sandbox_from;

/// A configured transform plugin. `apply` takes a batch and returns one result per record.
pub struct WasmTransform {
    plugin: Arc<LoadedPlugin>,
    config: Vec<(String, String)>,
    sandbox: Sandbox,
    connector: String,
    idle: Mutex<Vec<Session<Transform>>>,
}

impl std::fmt::Debug for WasmTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmTransform")
            .field("plugin", &self.plugin.name)
            .finish_non_exhaustive()
    }
}

impl WasmTransform {
    /// A transform from a plugin and its validated config (see [`crate::PluginSpec::config_spec`]).
    /// One instance is made and opened here, so a config the plugin rejects fails now.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        config: &ConnectorConfig,
        connector: &str,
    ) -> Result<Self> {
        plugin.expect(PluginKind::Transform)?;
        let transform = Self {
            config: plugin.spec.plugin_config(config),
            sandbox: sandbox_from(config),
            connector: connector.to_owned(),
            idle: Mutex::new(Vec::new()),
            plugin,
        };
        let session = in_place(|| transform.instance())?;
        transform
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
        Ok(transform)
    }

    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    fn instance(&self) -> Result<Session<Transform>> {
        let ctx = Context {
            connector: self.connector.clone(),
            task: None,
            offsets: None,
        };
        let mut session = Session::transform(&self.plugin, &self.sandbox, Some(ctx))?;
        session.open(&self.config)?;
        Ok(session)
    }

    /// Transforms a batch: one entry per input record ([`Results::get`]).
    ///
    /// The call runs on the calling thread. On a multi-threaded tokio runtime it runs inside
    /// `block_in_place`, so a slow plugin (bounded by its time limit) does not stall other tasks
    /// and WASI calls that wait (stderr, files) may block.
    pub fn apply(&self, batch: &Batch) -> Result<Results> {
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut session = match taken {
            Some(session) => session,
            None => in_place(|| self.instance())?,
        };
        let result = in_place(|| session.apply(&batch.inner));
        if !session.is_poisoned() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session);
        }
        let out = result?;
        let contract = |message| WasmError::Contract {
            plugin: self.plugin.name.clone(),
            message,
        };
        let n = count(&out).map_err(|e| contract(format!("`apply`: {e}")))?;
        if n != batch.len() {
            return Err(contract(format!(
                "`apply` returned {n} results for {} records; expected one per record",
                batch.len()
            )));
        }
        Ok(Results { inner: out })
    }
}

/// Runs `f` where blocking is allowed: inside `block_in_place` on a multi-threaded tokio
/// runtime's worker (WASI's synchronous calls wait on tokio), directly elsewhere.
pub(crate) fn in_place<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
