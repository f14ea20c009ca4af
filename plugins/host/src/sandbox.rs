//! What a plugin instance may use: its limits and grants ([`Sandbox`]), and the per-instance
//! store data ([`State`]) that implements the host imports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::OffsetReader;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::bindings::{host, types};
use crate::error::{Result, WasmError};

/// Default memory limit per instance.
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 64;
/// Default time limit per call into a plugin.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a plugin's stderr is kept to explain a trap (a Rust panic message lands there).
const STDERR_CAPACITY: usize = 16 * 1024;

/// Limits and grants of one plugin instance. Nothing is granted by default: no files, no network,
/// no environment variables, no arguments.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Most linear memory the instance may grow to, in bytes.
    pub memory_limit: u64,
    /// Most wall time one call may take.
    pub call_timeout: Duration,
    /// Host directories the plugin may read, each preopened read-only at the same path.
    pub read_only_dirs: Vec<PathBuf>,
    /// Host names the plugin may send HTTP requests to (wasi-http); empty means none.
    pub allowed_hosts: Vec<String>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self {
            memory_limit: DEFAULT_MEMORY_LIMIT_MIB * 1024 * 1024,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            read_only_dirs: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// Who is running, for logs.
#[derive(Debug, Clone)]
pub(crate) struct Who {
    pub(crate) plugin: String,
    pub(crate) connector: String,
    pub(crate) task: Option<u32>,
}

/// Committed-offset lookups for a source task.
#[derive(Clone)]
pub(crate) struct Offsets {
    pub(crate) reader: Arc<dyn OffsetReader>,
}

/// Memory limit that remembers being hit, so the trap that follows gets a clear reason.
pub(crate) struct Limiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The store data of one plugin instance.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: AllowList,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) who: Who,
    offsets: Option<Offsets>,
}

impl State {
    pub(crate) fn new(sandbox: &Sandbox, who: Who, offsets: Option<Offsets>) -> Result<Self> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtxBuilder::new();
        // No env, args, stdin or network (sockets are denied by the default address check);
        // stderr is kept to explain traps.
        wasi.stderr(stderr.clone());
        for dir in &sandbox.read_only_dirs {
            let guest = dir.to_string_lossy().into_owned();
            wasi.preopened_dir(dir, &guest, FsPerms::ReadOnly)
                .map_err(|e| WasmError::Instantiate {
                    plugin: who.plugin.clone(),
                    reason: format!("cannot grant read-only directory {}: {e:#}", dir.display()),
                })?;
        }
        Ok(Self {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: AllowList {
                hosts: sandbox.allowed_hosts.clone().into(),
                plugin: who.plugin.clone(),
            },
            table: ResourceTable::new(),
            limiter: Limiter {
                limit: usize::try_from(sandbox.memory_limit).unwrap_or(usize::MAX),
                hit: false,
            },
            stderr,
            who,
            offsets,
        })
    }

    /// The last lines the guest wrote to stderr (a panic message), for error reports.
    pub(crate) fn stderr_tail(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
        (!tail.is_empty()).then_some(tail)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing HTTP only to the hosts the pipeline granted.
struct AllowList {
    hosts: Arc<[String]>,
    plugin: String,
}

type ResponseIo =
    Box<dyn Future<Output = std::result::Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for AllowList {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: ResponseIo,
    ) -> Box<
        dyn Future<
                Output = std::result::Result<
                    (http::Response<wasmtime_wasi_http::WasiBody>, ResponseIo),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let host = request.uri().host().unwrap_or_default().to_owned();
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            tracing::warn!(plugin = %self.plugin, host = %host, "outgoing HTTP request denied: host not in allowed_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as ResponseIo,
            ))
        })
    }
}

impl types::Host for State {}

impl host::Host for State {
    async fn log(&mut self, level: types::Level, message: String) {
        let Who {
            plugin,
            connector,
            task,
        } = &self.who;
        match level {
            types::Level::Trace => tracing::trace!(plugin, connector, task, "{message}"),
            types::Level::Debug => tracing::debug!(plugin, connector, task, "{message}"),
            types::Level::Info => tracing::info!(plugin, connector, task, "{message}"),
            types::Level::Warn => tracing::warn!(plugin, connector, task, "{message}"),
            types::Level::Error => tracing::error!(plugin, connector, task, "{message}"),
        }
    }

    async fn now_millis(&mut self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    async fn committed_offset(&mut self, partition: String) -> Option<String> {
        let offsets = self.offsets.as_ref()?;
        let Ok(serde_json::Value::Object(partition)) = serde_json::from_str(&partition) else {
            tracing::warn!(plugin = %self.who.plugin, "committed-offset: the partition is not a JSON object");
            return None;
        };
        // Bounded like the rest of the call: the call's timeout drops this wait too.
        match offsets.reader.offset(&partition).await {
            Ok(offset) => offset.map(|o| serde_json::Value::Object(o).to_string()),
            Err(e) => {
                tracing::warn!(plugin = %self.who.plugin, error = %e, "committed-offset lookup failed");
                None
            }
        }
    }
}
