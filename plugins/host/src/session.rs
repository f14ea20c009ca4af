//! One plugin instance (a store plus its exports) and the one function every call goes through:
//! it arms the time limit and turns traps, limit hits and guest errors into [`WasmError`]s.
//!
//! The time limit is kept twice: the epoch deadline traps a call that computes too long, and a
//! wall-clock timeout drops a call that waits in a host call (a WASI sleep or poll, an HTTP
//! response that never comes), where no wasm runs that epoch interruption could stop.

use std::time::Duration;

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
        instantiate: impl AsyncFnOnce(&mut Store<State>) -> wasmtime::Result<E>,
    ) -> Result<Self> {
        let mut store = store(plugin, sandbox, ctx)?;
        let timeout = || WasmError::Timeout {
            plugin: plugin.name.clone(),
            call: "instantiate",
            limit: sandbox.call_timeout,
        };
        match within(sandbox.call_timeout, instantiate(&mut store)).ok_or_else(timeout)? {
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

    /// Runs one call under the time limit. A trap, a limit hit or a timeout poisons the
    /// instance: a fresh one is needed (wasm state after a trap or a dropped call is not
    /// trustworthy).
    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl AsyncFnOnce(
            &E,
            &mut Store<State>,
        ) -> wasmtime::Result<std::result::Result<R, types::Error>>,
    ) -> Result<R> {
        if self.poisoned {
            return Err(WasmError::Poisoned {
                plugin: self.plugin.clone(),
            });
        }
        self.store.set_epoch_deadline(deadline(&self.sandbox));
        let Some(outcome) = within(self.sandbox.call_timeout, f(&self.exports, &mut self.store))
        else {
            self.poisoned = true;
            return Err(WasmError::Timeout {
                plugin: self.plugin.clone(),
                call,
                limit: self.sandbox.call_timeout,
            });
        };
        match outcome {
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

/// Runs `call` to its end on this thread, or drops it (cancelling the guest, even one waiting in
/// a host call) once `limit` has passed: `None`. Callers are on a thread where blocking is
/// allowed (a blocking-pool thread, or inside `block_in_place`).
fn within<T>(limit: Duration, call: impl Future<Output = T>) -> Option<T> {
    wasmtime_wasi::runtime::in_tokio(async { tokio::time::timeout(limit, call).await.ok() })
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
        Self::start(plugin, sandbox, ctx, async |store| {
            pre.instantiate_async(store).await
        })
    }

    pub(crate) fn spec(&mut self) -> Result<Vec<types::ConfigField>> {
        self.call("spec", async |e, s| {
            e.sluice_connector_source_task().call_spec(s).await.map(Ok)
        })
    }

    pub(crate) fn open(
        &mut self,
        config: &[(String, String)],
        task: u32,
        tasks: u32,
    ) -> Result<()> {
        self.call("open", async |e, s| {
            e.sluice_connector_source_task()
                .call_open(s, &config.to_vec(), task, tasks)
                .await
        })
    }

    pub(crate) fn poll(&mut self, max: u32) -> Result<types::Batch> {
        self.call("poll", async |e, s| {
            e.sluice_connector_source_task().call_poll(s, max).await
        })
    }

    pub(crate) fn commit(&mut self, offsets: &[(String, String)]) -> Result<()> {
        self.call("commit", async |e, s| {
            e.sluice_connector_source_task()
                .call_commit(s, offsets)
                .await
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
        Self::start(plugin, sandbox, ctx, async |store| {
            pre.instantiate_async(store).await
        })
    }

    pub(crate) fn spec(&mut self) -> Result<Vec<types::ConfigField>> {
        self.call("spec", async |e, s| {
            e.sluice_connector_sink_task().call_spec(s).await.map(Ok)
        })
    }

    pub(crate) fn open(&mut self, config: &[(String, String)], task: u32) -> Result<()> {
        self.call("open", async |e, s| {
            e.sluice_connector_sink_task()
                .call_open(s, &config.to_vec(), task)
                .await
        })
    }

    pub(crate) fn put(&mut self, batch: &types::Batch) -> Result<()> {
        self.call("put", async |e, s| {
            e.sluice_connector_sink_task().call_put(s, batch).await
        })
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        self.call("flush", async |e, s| {
            e.sluice_connector_sink_task().call_flush(s).await
        })
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
        Self::start(plugin, sandbox, ctx, async |store| {
            pre.instantiate_async(store).await
        })
    }

    pub(crate) fn spec(&mut self) -> Result<Vec<types::ConfigField>> {
        self.call("spec", async |e, s| {
            e.sluice_connector_transformer().call_spec(s).await.map(Ok)
        })
    }

    pub(crate) fn open(&mut self, config: &[(String, String)]) -> Result<()> {
        self.call("open", async |e, s| {
            e.sluice_connector_transformer()
                .call_open(s, &config.to_vec())
                .await
        })
    }

    pub(crate) fn apply(&mut self, batch: &types::Batch) -> Result<types::Batch> {
        self.call("apply", async |e, s| {
            e.sluice_connector_transformer().call_apply(s, batch).await
        })
    }
}
