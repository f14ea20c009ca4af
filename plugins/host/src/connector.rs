//! Source and sink plugins adapted to the connector traits, the `wasm` connector type (the
//! component named by its `plugin` field) and the plugins directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value as Json};
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, FieldError, Plugin, PluginResolver, Registry,
    SinkConnector, SinkPlugin, SinkRecord, SinkTask, SinkTaskContext, SourceConnector,
    SourceOffset, SourcePartition, SourcePlugin, SourceRecord, SourceTask, SourceTaskContext,
    TopicPartition,
};

use crate::bindings::sink::Sink;
use crate::bindings::source::Source;
use crate::engine::{LoadedPlugin, PluginKind, load};
use crate::error::WasmError;
use crate::record::{count, sink_batch, source_record, view};
use crate::sandbox::Offsets;
use crate::session::{Context, Session};
use crate::spec::{PLUGIN_FIELD, path_field_spec, sandbox_from, sandbox_spec};

/// Key the connector adds to each task config: how many tasks there are (`open` receives it).
const TASK_COUNT_KEY: &str = "__sluice_wasm_task_count";
/// Most records one `poll` may return.
const POLL_MAX: u32 = 1000;
/// Pause after an empty poll, so an idle plugin does not spin a core.
const IDLE_PAUSE: Duration = Duration::from_millis(50);

type Res<T> = sluice_connector_api::Result<T>;

/// Runs a call on a blocking thread (wasm calls are synchronous; the tokio workers stay free)
/// and keeps the instance unless the call poisoned it.
async fn blocking<E, R>(
    slot: &mut Mutex<Option<Session<E>>>,
    plugin: &str,
    f: impl FnOnce(&mut Session<E>) -> crate::Result<R> + Send + 'static,
) -> Res<R>
where
    E: Send + 'static,
    R: Send + 'static,
{
    let slot = slot.get_mut().unwrap_or_else(|e| e.into_inner());
    let mut session = slot.take().ok_or_else(|| WasmError::Poisoned {
        plugin: plugin.to_owned(),
    })?;
    let (session, result) = tokio::task::spawn_blocking(move || {
        let result = f(&mut session);
        (session, result)
    })
    .await
    .map_err(|e| ConnectorError::fatal(format!("plugin {plugin}: the host call failed: {e}")))?;
    if !session.is_poisoned() {
        *slot = Some(session);
    }
    Ok(result?)
}

fn spec_for(plugin: &LoadedPlugin, with_path: bool) -> ConfigSpec {
    plugin.spec.config_spec(with_path)
}

/// A source plugin as a connector type.
pub struct WasmSourcePlugin {
    name: String,
    doc: String,
    plugin: Arc<LoadedPlugin>,
    with_path: bool,
}

impl WasmSourcePlugin {
    /// Registered under the plugin's own name (from a plugins directory).
    pub fn named(plugin: Arc<LoadedPlugin>) -> Result<Self, WasmError> {
        Self::new(plugin.name.clone(), plugin, false)
    }

    fn new(name: String, plugin: Arc<LoadedPlugin>, with_path: bool) -> Result<Self, WasmError> {
        plugin.expect(PluginKind::Source)?;
        Ok(Self {
            doc: format!(
                "WebAssembly source plugin `{}` ({}).",
                plugin.name,
                plugin.path.display()
            ),
            name,
            plugin,
            with_path,
        })
    }
}

impl SourcePlugin for WasmSourcePlugin {
    fn name(&self) -> &str {
        &self.name
    }
    fn doc(&self) -> &str {
        &self.doc
    }
    fn spec(&self) -> ConfigSpec {
        spec_for(&self.plugin, self.with_path)
    }
    fn connector(&self) -> Box<dyn SourceConnector> {
        Box::new(WasmConnector::default())
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(WasmSourceTask {
            plugin: self.plugin.clone(),
            session: Mutex::new(None),
        })
    }
}

/// The connector half: every task gets the connector's config (plus the task count).
#[derive(Default)]
struct WasmConnector {
    config: ConnectorConfig,
}

impl WasmConnector {
    fn tasks(&self, max_tasks: u32) -> Vec<ConnectorConfig> {
        let count = max_tasks.max(1);
        (0..count)
            .map(|_| {
                let mut config = self.config.clone();
                config
                    .0
                    .insert(TASK_COUNT_KEY.to_owned(), Json::from(count));
                config
            })
            .collect()
    }
}

#[async_trait]
impl SourceConnector for WasmConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Res<()> {
        self.config = config.clone();
        Ok(())
    }
    fn task_configs(&self, max_tasks: u32) -> Res<Vec<ConnectorConfig>> {
        Ok(self.tasks(max_tasks))
    }
}

#[async_trait]
impl SinkConnector for WasmConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Res<()> {
        self.config = config.clone();
        Ok(())
    }
    fn task_configs(&self, max_tasks: u32) -> Res<Vec<ConnectorConfig>> {
        Ok(self.tasks(max_tasks))
    }
}

struct WasmSourceTask {
    plugin: Arc<LoadedPlugin>,
    /// Behind a mutex only so the task is `Sync`; calls never contend.
    session: Mutex<Option<Session<Source>>>,
}

#[async_trait]
impl SourceTask for WasmSourceTask {
    async fn start(&mut self, ctx: SourceTaskContext, config: &ConnectorConfig) -> Res<()> {
        let plugin = self.plugin.clone();
        let sandbox = sandbox_from(config);
        let pairs = plugin.spec.plugin_config(config);
        let count = config
            .get_i64(TASK_COUNT_KEY)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(1);
        let context = Context {
            connector: ctx.connector.clone(),
            task: Some(ctx.task_id),
            offsets: Some(Offsets {
                reader: ctx.offsets.clone(),
            }),
        };
        let task = ctx.task_id;
        let session = tokio::task::spawn_blocking(move || {
            let mut session = Session::source(&plugin, &sandbox, Some(context))?;
            session.open(&pairs, task, count)?;
            Ok::<_, WasmError>(session)
        })
        .await
        .map_err(|e| ConnectorError::fatal(format!("plugin start failed: {e}")))??;
        self.session = Mutex::new(Some(session));
        Ok(())
    }

    async fn poll(&mut self) -> Res<Vec<SourceRecord>> {
        let name = self.plugin.name.clone();
        let batch = blocking(&mut self.session, &name, |s| s.poll(POLL_MAX)).await?;
        if batch.records.is_empty() {
            tokio::time::sleep(IDLE_PAUSE).await;
        }
        let contract = |message: String| {
            ConnectorError::from(WasmError::Contract {
                plugin: name.clone(),
                message: format!("poll: {message}"),
            })
        };
        let n = count(&batch).map_err(contract)?;
        (0..n)
            .map(|i| {
                match view(&batch, i) {
                    Ok(Some(record)) => source_record(record),
                    Ok(None) => Err(format!("record {i} has no topic")),
                    Err(e) => Err(format!("record {i}: {e}")),
                }
                .map_err(contract)
            })
            .collect()
    }

    async fn commit(&mut self, offsets: &[(SourcePartition, SourceOffset)]) -> Res<()> {
        let pairs: Vec<(String, String)> = offsets
            .iter()
            .map(|(p, o)| {
                (
                    Json::Object(p.clone()).to_string(),
                    Json::Object(o.clone()).to_string(),
                )
            })
            .collect();
        let name = self.plugin.name.clone();
        blocking(&mut self.session, &name, move |s| s.commit(&pairs)).await
    }

    async fn stop(&mut self) -> Res<()> {
        self.session = Mutex::new(None);
        Ok(())
    }
}

/// A sink plugin as a connector type.
pub struct WasmSinkPlugin {
    name: String,
    doc: String,
    plugin: Arc<LoadedPlugin>,
    with_path: bool,
}

impl WasmSinkPlugin {
    /// Registered under the plugin's own name (from a plugins directory).
    pub fn named(plugin: Arc<LoadedPlugin>) -> Result<Self, WasmError> {
        Self::new(plugin.name.clone(), plugin, false)
    }

    fn new(name: String, plugin: Arc<LoadedPlugin>, with_path: bool) -> Result<Self, WasmError> {
        plugin.expect(PluginKind::Sink)?;
        Ok(Self {
            doc: format!(
                "WebAssembly sink plugin `{}` ({}).",
                plugin.name,
                plugin.path.display()
            ),
            name,
            plugin,
            with_path,
        })
    }
}

impl SinkPlugin for WasmSinkPlugin {
    fn name(&self) -> &str {
        &self.name
    }
    fn doc(&self) -> &str {
        &self.doc
    }
    fn spec(&self) -> ConfigSpec {
        let mut spec = spec_for(&self.plugin, self.with_path);
        // Sinks read `topics`, as every sink does.
        if spec.field("topics").is_none() {
            spec = spec
                .required(
                    "topics",
                    sluice_connector_api::FieldKind::List,
                    "Topics to read.",
                )
                .check(sluice_connector_api::Validator::NonEmpty);
        }
        spec
    }
    fn connector(&self) -> Box<dyn SinkConnector> {
        Box::new(WasmConnector::default())
    }
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(WasmSinkTask {
            plugin: self.plugin.clone(),
            session: Mutex::new(None),
        })
    }
}

struct WasmSinkTask {
    plugin: Arc<LoadedPlugin>,
    /// Behind a mutex only so the task is `Sync`; calls never contend.
    session: Mutex<Option<Session<Sink>>>,
}

#[async_trait]
impl SinkTask for WasmSinkTask {
    async fn start(&mut self, ctx: SinkTaskContext, config: &ConnectorConfig) -> Res<()> {
        let plugin = self.plugin.clone();
        let sandbox = sandbox_from(config);
        let pairs = plugin.spec.plugin_config(config);
        let context = Context {
            connector: ctx.connector.clone(),
            task: Some(ctx.task_id),
            offsets: None,
        };
        let task = ctx.task_id;
        let session = tokio::task::spawn_blocking(move || {
            let mut session = Session::sink(&plugin, &sandbox, Some(context))?;
            session.open(&pairs, task)?;
            Ok::<_, WasmError>(session)
        })
        .await
        .map_err(|e| ConnectorError::fatal(format!("plugin start failed: {e}")))??;
        self.session = Mutex::new(Some(session));
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Res<()> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = sink_batch(&records);
        let name = self.plugin.name.clone();
        blocking(&mut self.session, &name, move |s| s.put(&batch.inner)).await
    }

    async fn flush(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Res<HashMap<TopicPartition, i64>> {
        let name = self.plugin.name.clone();
        blocking(&mut self.session, &name, |s| s.flush()).await?;
        Ok(offsets.clone())
    }

    async fn stop(&mut self) -> Res<()> {
        self.session = Mutex::new(None);
        Ok(())
    }
}

/// The `wasm` connector type: the component named by the config's `plugin` field.
#[derive(Debug, Default)]
pub struct WasmResolver;

impl PluginResolver for WasmResolver {
    fn doc(&self) -> &str {
        "A WebAssembly component plugin (source or sink), named by `plugin`; its own fields come from the component."
    }

    fn spec(&self) -> ConfigSpec {
        let mut spec = path_field_spec();
        spec.fields.extend(sandbox_spec().fields);
        spec
    }

    fn resolve(&self, config: &Map<String, Json>) -> Result<Plugin, Vec<FieldError>> {
        let Some(path) = config.get(PLUGIN_FIELD).and_then(Json::as_str) else {
            return Err(vec![FieldError::new(
                PLUGIN_FIELD,
                "missing required field; expected the path of a WebAssembly component (.wasm)",
            )]);
        };
        let field = |e: WasmError| vec![FieldError::new(PLUGIN_FIELD, e.to_string())];
        let plugin = load(Path::new(path)).map_err(field)?;
        match plugin.kind {
            PluginKind::Source => Ok(Plugin::Source(Arc::new(
                WasmSourcePlugin::new("wasm".to_owned(), plugin, true).map_err(field)?,
            ))),
            PluginKind::Sink => Ok(Plugin::Sink(Arc::new(
                WasmSinkPlugin::new("wasm".to_owned(), plugin, true).map_err(field)?,
            ))),
            PluginKind::Transform => Err(vec![FieldError::new(
                PLUGIN_FIELD,
                format!(
                    "plugin {} is a transform; use it in `transforms` (type: wasm), not as a connector",
                    plugin.name
                ),
            )]),
        }
    }
}

static NAMED_TRANSFORMS: OnceLock<Mutex<HashMap<String, Arc<LoadedPlugin>>>> = OnceLock::new();

/// A transform plugin registered from a plugins directory, by name.
pub fn named_transform(name: &str) -> Option<Arc<LoadedPlugin>> {
    NAMED_TRANSFORMS
        .get()?
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

/// The names of the transform plugins registered from the plugins directory, sorted.
pub fn named_transforms() -> Vec<String> {
    let mut names: Vec<String> = NAMED_TRANSFORMS
        .get()
        .map(|m| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Registers the `wasm` connector type, and every `*.wasm` component in `dir` (when given) under
/// its file stem: sources and sinks as connector types, transforms as transform types. Returns
/// the plugins registered and the files that could not be loaded (a bad file does not stop the
/// others).
pub fn register(
    registry: &mut Registry,
    dir: Option<&Path>,
) -> (Vec<Arc<LoadedPlugin>>, Vec<WasmError>) {
    registry.add_resolver("wasm", WasmResolver);
    let Some(dir) = dir else {
        return (Vec::new(), Vec::new());
    };
    let mut loaded = Vec::new();
    let mut failed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(source) => {
            failed.push(WasmError::Read {
                path: dir.to_owned(),
                source,
            });
            return (loaded, failed);
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    paths.sort();
    for path in paths {
        let plugin = match load(&path) {
            Ok(plugin) => plugin,
            Err(e) => {
                failed.push(e);
                continue;
            }
        };
        let added = match plugin.kind {
            PluginKind::Source => {
                WasmSourcePlugin::named(plugin.clone()).map(|p| registry.add_source(p))
            }
            PluginKind::Sink => WasmSinkPlugin::named(plugin.clone()).map(|p| registry.add_sink(p)),
            PluginKind::Transform => {
                NAMED_TRANSFORMS
                    .get_or_init(Default::default)
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(plugin.name.clone(), plugin.clone());
                Ok(())
            }
        };
        match added {
            Ok(()) => loaded.push(plugin),
            Err(e) => failed.push(e),
        }
    }
    (loaded, failed)
}
