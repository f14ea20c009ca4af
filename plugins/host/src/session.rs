//! One plugin instance (a store plus its exports) and the one function every call goes through:
//! it arms the time limit and turns traps, limit hits and guest errors into [`WasmError`]s.

use wasmtime::Store;

use crate::bindings::sink::{Sink, SinkPre};
use crate::bindings::source::{Source, SourcePre};
use crate::bindings::transform::{Transform, TransformPre};
use crate::bindings::types;
use crate::engine::{LoadedPlugin, TICK, host};
use crate::error::{Result, WasmError};
use crate::sandbox::{Offsets, Sandbox, State, Who};

/// Where an instance runs, for logs and offset lookups; `None` when only asked for its spec.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) connector: String,
    pub(crate) task: Option<u32>,
    pub(crate) offsets: Option<Offsets>,
}

pub(crate) struct Session<E> {
    store: Store<State>,
    exports: E,
    plugin: String,
    sandbox: Sandbox,
    poisoned: bool,
}

fn deadline(sandbox: &Sandbox) -> u64 {
    (sandbox.call_timeout.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}

fn store(plugin: &LoadedPlugin, sandbox: &Sandbox, ctx: Option<Context>) -> Result<Store<State>> {
    let host = host()?;
    let (who, offsets) = match ctx {
        Some(ctx) => (
            Who {
                plugin: plugin.name.clone(),
                connector: ctx.connector,
                task: ctx.task,
            },
            ctx.offsets,
        ),
        None => (
            Who {
                plugin: plugin.name.clone(),
                connector: String::new(),
                task: None,
            },
            None,
        ),
    };
    let mut store = Store::new(&host.engine, State::new(sandbox, who, offsets)?);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline(sandbox));
    Ok(store)
}

impl<E> Session<E> {
    fn start(
        plugin: &LoadedPlugin,
        sandbox: &Sandbox,
        ctx: Option<Context>,
        instantiate: impl FnOnce(&mut Store<State>) -> wasmtime::Result<E>,
    ) -> Result<Self> {
        let mut store = store(plugin, sandbox, ctx)?;
        match instantiate(&mut store) {
            Ok(exports) => Ok(Self {
                store,
                exports,
                plugin: plugin.name.clone(),
                sandbox: sandbox.clone(),
                poisoned: false,
            }),
            Err(e) => Err(classify(&plugin.name, sandbox, &store, "instantiate", e)),
        }
    }

    /// Runs one call under the time limit. A trap or limit hit poisons the instance: a fresh
    /// one is needed (wasm state after a trap is not trustworthy).
    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&E, &mut Store<State>) -> wasmtime::Result<std::result::Result<R, types::Error>>,
    ) -> Result<R> {
        if self.poisoned {
            return Err(WasmError::Poisoned {
                plugin: self.plugin.clone(),
            });
        }
        self.store.set_epoch_deadline(deadline(&self.sandbox));
        match f(&self.exports, &mut self.store) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let (kind, message) = match e {
                    types::Error::Config(m) => (sluice_connector_api::ErrorKind::Config, m),
                    types::Error::Retriable(m) => (sluice_connector_api::ErrorKind::Retriable, m),
                    types::Error::Data(m) => (sluice_connector_api::ErrorKind::Data, m),
                    types::Error::Fatal(m) => (sluice_connector_api::ErrorKind::Fatal, m),
                };
                Err(WasmError::Guest {
                    plugin: self.plugin.clone(),
                    call,
                    kind,
                    message,
                })
            }
            Err(e) => {
                self.poisoned = true;
                Err(classify(&self.plugin, &self.sandbox, &self.store, call, e))
            }
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned
    }
}

fn classify(
    plugin: &str,
    sandbox: &Sandbox,
    store: &Store<State>,
    call: &'static str,
    error: wasmtime::Error,
) -> WasmError {
    let plugin = plugin.to_owned();
    if store.data().limiter.hit {
        return WasmError::Memory {
            plugin,
            call,
            limit_mib: sandbox.memory_limit / (1024 * 1024),
        };
    }
    let trap = error.downcast_ref::<wasmtime::Trap>().copied();
    if trap == Some(wasmtime::Trap::Interrupt) {
        return WasmError::Timeout {
            plugin,
            call,
            limit: sandbox.call_timeout,
        };
    }
    let what = match trap {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
    };
    let reason = match store.data().stderr_tail() {
        Some(stderr) => format!("{stderr} ({what})"),
        None => what,
    };
    WasmError::Trap {
        plugin,
        call,
        reason,
    }
}

impl Session<Source> {
    pub(crate) fn source(
        plugin: &LoadedPlugin,
        sandbox: &Sandbox,
        ctx: Option<Context>,
    ) -> Result<Self> {
        let pre = SourcePre::new(plugin.pre.clone()).map_err(|e| WasmError::Instantiate {
            plugin: plugin.name.clone(),
            reason: format!("{e:#}"),
        })?;
        Self::start(plugin, sandbox, ctx, |store| pre.instantiate(store))
    }

    pub(crate) fn spec(&mut self) -> Result<Vec<types::ConfigField>> {
        self.call("spec", |e, s| {
            e.sluice_connector_source_task().call_spec(s).map(Ok)
        })
    }

    pub(crate) fn open(
        &mut self,
        config: &[(String, String)],
        task: u32,
        tasks: u32,
    ) -> Result<()> {
        self.call("open", |e, s| {
            e.sluice_connector_source_task()
                .call_open(s, &config.to_vec(), task, tasks)
        })
    }

    pub(crate) fn poll(&mut self, max: u32) -> Result<types::Batch> {
        self.call("poll", |e, s| {
            e.sluice_connector_source_task().call_poll(s, max)
        })
    }

    pub(crate) fn commit(&mut self, offsets: &[(String, String)]) -> Result<()> {
        self.call("commit", |e, s| {
            e.sluice_connector_source_task().call_commit(s, offsets)
        })
    }
}

impl Session<Sink> {
    pub(crate) fn sink(
        plugin: &LoadedPlugin,
        sandbox: &Sandbox,
        ctx: Option<Context>,
    ) -> Result<Self> {
        let pre = SinkPre::new(plugin.pre.clone()).map_err(|e| WasmError::Instantiate {
            plugin: plugin.name.clone(),
            reason: format!("{e:#}"),
        })?;
        Self::start(plugin, sandbox, ctx, |store| pre.instantiate(store))
    }

    pub(crate) fn spec(&mut self) -> Result<Vec<types::ConfigField>> {
        self.call("spec", |e, s| {
            e.sluice_connector_sink_task().call_spec(s).map(Ok)
        })
    }

    pub(crate) fn open(&mut self, config: &[(String, String)], task: u32) -> Result<()> {
        self.call("open", |e, s| {
            e.sluice_connector_sink_task()
                .call_open(s, &config.to_vec(), task)
        })
    }

    pub(crate) fn put(&mut self, batch: &types::Batch) -> Result<()> {
        self.call("put", |e, s| {
            e.sluice_connector_sink_task().call_put(s, batch)
        })
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.call("flush", |e, s| e.sluice_connector_sink_task().call_flush(s))
    }
}

impl Session<Transform> {
    pub(crate) fn transform(
        plugin: &LoadedPlugin,
        sandbox: &Sandbox,
        ctx: Option<Context>,
    ) -> Result<Self> {
        let pre = TransformPre::new(plugin.pre.clone()).map_err(|e| WasmError::Instantiate {
            plugin: plugin.name.clone(),
            reason: format!("{e:#}"),
        })?;
        Self::start(plugin, sandbox, ctx, |store| pre.instantiate(store))
    }

    pub(crate) fn spec(&mut self) -> Result<Vec<types::ConfigField>> {
        self.call("spec", |e, s| {
            e.sluice_connector_transformer().call_spec(s).map(Ok)
        })
    }

    pub(crate) fn open(&mut self, config: &[(String, String)]) -> Result<()> {
        self.call("open", |e, s| {
            e.sluice_connector_transformer()
                .call_open(s, &config.to_vec())
        })
    }

    pub(crate) fn apply(&mut self, batch: &types::Batch) -> Result<types::Batch> {
        self.call("apply", |e, s| {
            e.sluice_connector_transformer().call_apply(s, batch)
        })
    }
}
