//! `sluice-wasm`: runs WebAssembly component plugins as Sluice connectors and transforms.
//!
//! A plugin is a component implementing one world of the `sluice:connector@0.2.0` WIT package
//! (`plugins/wit`): `source`, `sink` or `transform`. [`load`] compiles a component once (the
//! compiled artifact is cached on disk, keyed by hash) and asks it for its config spec;
//! [`WasmSourcePlugin`] and [`WasmSinkPlugin`] adapt sources and sinks to the connector traits so
//! the runtime treats them exactly like built-ins, and [`WasmTransform`] runs a transform
//! plugin on batches of records.
//!
//! Every instance runs in a [`Sandbox`]: no files, network or environment unless granted, a
//! memory limit, and a time limit per call (epoch interruption). A trap, a limit hit or a
//! timeout becomes a [`WasmError`] naming the plugin and the call; it fails the task that made
//! the call, never the worker.
//!
//! ```no_run
//! let plugin = sluice_wasm::load("plugins/redact.wasm".as_ref())?;
//! println!("{} is a {} plugin", plugin.name(), plugin.kind().as_str());
//! # Ok::<(), sluice_wasm::WasmError>(())
//! ```

mod bindings;
mod connector;
mod engine;
mod error;
mod record;
mod sandbox;
mod session;
mod spec;
mod transform;

pub use connector::{
    WasmResolver, WasmSinkPlugin, WasmSourcePlugin, named_transform, named_transforms, register,
};
pub use engine::{CACHE_DIR_ENV, LoadedPlugin, PluginKind, load, plugin_name};
pub use error::{Result, WasmError};
#[doc(hidden)]
pub use record::check_returned_batch;
pub use record::{Batch, Meta, RecordView, Results, decode_value, encode_value};
pub use sandbox::{DEFAULT_CALL_TIMEOUT, DEFAULT_MEMORY_LIMIT_MIB, Sandbox};
pub use spec::{
    ALLOWED_HOSTS_FIELD, CALL_TIMEOUT_FIELD, MEMORY_LIMIT_FIELD, PLUGIN_FIELD, PluginSpec,
    READ_ONLY_DIRS_FIELD, path_field_spec, sandbox_from, sandbox_spec,
};
pub use transform::WasmTransform;
