//! The process's one wasmtime [`Engine`] (epoch interruption, compiled-artifact cache on disk),
//! its [`Linker`] built once, the epoch ticker, and loading plugin files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine};

use crate::bindings;
use crate::error::{Result, WasmError};
use crate::sandbox::{Sandbox, State};
use crate::session::Session;
use crate::spec::PluginSpec;

/// How often the epoch advances; time limits are counted in these ticks.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// Environment variable naming the directory for compiled plugins (default
/// `$XDG_CACHE_HOME/sluice/wasm` or `~/.cache/sluice/wasm`).
pub const CACHE_DIR_ENV: &str = "SLUICE_WASM_CACHE_DIR";

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Source,
    Sink,
    Transform,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Sink => "sink",
            Self::Transform => "transform",
        }
    }
}

pub(crate) struct Host {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<State>,
}

static HOST: OnceLock<std::result::Result<Host, String>> = OnceLock::new();

/// The engine and linker, created on first use with the epoch ticker running.
pub(crate) fn host() -> Result<&'static Host> {
    HOST.get_or_init(|| Host::new().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| WasmError::Engine(e.clone()))
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sluice").join("wasm")
}

impl Host {
    fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        // Time limits: the ticker below advances the epoch, so a call that computes past its
        // deadline traps. A call waiting in a host call (a WASI sleep, a slow HTTP peer) runs
        // no wasm to trap; calls are async (the async linker and bindings) so the session's
        // wall-clock timeout can drop them.
        config.epoch_interruption(true);
        // Compiled artifacts are cached on disk keyed by a hash of the component and the
        // compiler settings, so a restart (or another worker on the machine) skips compilation.
        let mut cache = CacheConfig::new();
        cache.with_directory(cache_dir());
        config.cache(Some(Cache::new(cache)?));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::source::Source::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("sluice-wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })?;
        Ok(Self { engine, linker })
    }
}

/// A compiled plugin component: its name, world and declared config fields. Instances are made
/// from it per task (cheaply: imports are resolved once here).
pub struct LoadedPlugin {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) kind: PluginKind,
    pub(crate) pre: InstancePre<State>,
    pub(crate) spec: PluginSpec,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The plugin's name: its file name without `.wasm`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The config fields the plugin declared (without the host's sandbox fields).
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    pub(crate) fn expect(&self, kind: PluginKind) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(WasmError::WrongKind {
                plugin: self.name.clone(),
                found: self.kind.as_str(),
                expected: kind.as_str(),
            })
        }
    }
}

/// Loaded plugins by canonical path, with the file's modification time and length: validating a
/// config (on every REST request) must not compile again.
type Memo = HashMap<PathBuf, (Option<SystemTime>, u64, Arc<LoadedPlugin>)>;
static LOADED: OnceLock<Mutex<Memo>> = OnceLock::new();

/// The name a plugin file is known by: its file stem.
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Largest component file loaded (a Python component with CPython inside is ~20 MB).
const MAX_PLUGIN_BYTES: u64 = 512 << 20;

/// Loads (compiles, or takes from the cache) the component at `path` and asks it for its config
/// spec. Loading the same unchanged file again returns the same plugin.
pub fn load(path: &Path) -> Result<Arc<LoadedPlugin>> {
    let read = |source| WasmError::Read {
        path: path.to_owned(),
        source,
    };
    let canonical = path.canonicalize().map_err(read)?;
    let meta = std::fs::metadata(&canonical).map_err(read)?;
    // A device (`/dev/zero`) or a FIFO would be read without end, or block, inside a request.
    if !meta.is_file() {
        return Err(read(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(read(std::io::Error::other(format!(
            "larger than {MAX_PLUGIN_BYTES} bytes"
        ))));
    }
    let stamp = (meta.modified().ok(), meta.len());
    let memo = LOADED.get_or_init(Default::default);
    if let Some((modified, len, plugin)) = memo
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&canonical)
        && (*modified, *len) == stamp
    {
        return Ok(plugin.clone());
    }
    let bytes = std::fs::read(&canonical).map_err(read)?;
    let plugin = Arc::new(compile(plugin_name(path), canonical.clone(), &bytes)?);
    memo.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(canonical, (stamp.0, stamp.1, plugin.clone()));
    Ok(plugin)
}

fn compile(name: String, path: PathBuf, bytes: &[u8]) -> Result<LoadedPlugin> {
    let host = host()?;
    let component = Component::new(&host.engine, bytes).map_err(|e| WasmError::Compile {
        plugin: name.clone(),
        reason: format!("{e:#}"),
    })?;
    let exports: Vec<String> = component
        .component_type()
        .exports(&host.engine)
        .map(|(export, _)| export.to_owned())
        .collect();
    let has = |interface: &str| {
        exports
            .iter()
            .any(|e| e.starts_with(&format!("sluice:connector/{interface}@0.2.")))
    };
    let kind = if has("source-task") {
        PluginKind::Source
    } else if has("sink-task") {
        PluginKind::Sink
    } else if has("transformer") {
        PluginKind::Transform
    } else {
        return Err(WasmError::NotAPlugin {
            plugin: name,
            exports: exports.join(", "),
        });
    };
    let pre = host
        .linker
        .instantiate_pre(&component)
        .map_err(|e| WasmError::Instantiate {
            plugin: name.clone(),
            reason: format!("{e:#}"),
        })?;
    let mut plugin = LoadedPlugin {
        name,
        path,
        kind,
        pre,
        spec: PluginSpec::default(),
    };
    // The spec comes from the plugin itself, asked once in a sandbox with the default limits.
    let sandbox = Sandbox::default();
    let fields = crate::transform::in_place(|| match kind {
        PluginKind::Source => Session::source(&plugin, &sandbox, None)?.spec(),
        PluginKind::Sink => Session::sink(&plugin, &sandbox, None)?.spec(),
        PluginKind::Transform => Session::transform(&plugin, &sandbox, None)?.spec(),
    })?;
    plugin.spec = PluginSpec::from_fields(&plugin.name, fields)?;
    Ok(plugin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_loaded() {
        let err = load(Path::new("/dev/zero")).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cannot read plugin /dev/zero: not a regular file")
        );
    }
}
