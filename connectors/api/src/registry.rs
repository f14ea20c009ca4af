//! Where connector types are registered. Each connector crate exposes
//! `pub fn register(registry: &mut Registry)`; the runtime calls them all in one place.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sink::{SinkConnector, SinkTask};
use crate::source::{SourceConnector, SourceTask};
use crate::spec::{ConfigSpec, FieldError};

/// Whether a connector type reads into Kafka or writes out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    Source,
    Sink,
}

impl ConnectorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Sink => "sink",
        }
    }
}

/// A source connector type: its documentation, config spec and constructors.
pub trait SourcePlugin: Send + Sync {
    fn name(&self) -> &str;
    fn doc(&self) -> &str;
    fn spec(&self) -> ConfigSpec;
    fn connector(&self) -> Box<dyn SourceConnector>;
    fn task(&self) -> Box<dyn SourceTask>;
}

/// A sink connector type: its documentation, config spec and constructors.
pub trait SinkPlugin: Send + Sync {
    fn name(&self) -> &str;
    fn doc(&self) -> &str;
    fn spec(&self) -> ConfigSpec;
    fn connector(&self) -> Box<dyn SinkConnector>;
    fn task(&self) -> Box<dyn SinkTask>;
}

/// A registered connector type.
#[derive(Clone)]
pub enum Plugin {
    Source(Arc<dyn SourcePlugin>),
    Sink(Arc<dyn SinkPlugin>),
}

impl Plugin {
    pub fn name(&self) -> &str {
        match self {
            Self::Source(p) => p.name(),
            Self::Sink(p) => p.name(),
        }
    }

    pub fn kind(&self) -> ConnectorKind {
        match self {
            Self::Source(_) => ConnectorKind::Source,
            Self::Sink(_) => ConnectorKind::Sink,
        }
    }

    pub fn doc(&self) -> &str {
        match self {
            Self::Source(p) => p.doc(),
            Self::Sink(p) => p.doc(),
        }
    }

    pub fn spec(&self) -> ConfigSpec {
        match self {
            Self::Source(p) => p.spec(),
            Self::Sink(p) => p.spec(),
        }
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plugin({} {})", self.kind().as_str(), self.name())
    }
}

/// A connector type whose plugin is chosen by its config rather than its name: `wasm`, whose
/// `plugin` field names a WebAssembly component.
pub trait PluginResolver: Send + Sync {
    fn doc(&self) -> &str;
    /// The fields every resolved plugin accepts (the plugin's own come from [`Self::resolve`]).
    fn spec(&self) -> ConfigSpec;
    /// The plugin a connector config asks for; errors name the config field.
    fn resolve(
        &self,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Plugin, Vec<FieldError>>;
}

#[derive(Clone)]
struct Resolver(Arc<dyn PluginResolver>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginResolver")
    }
}

/// All connector types known to a worker, by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    plugins: BTreeMap<String, Plugin>,
    resolvers: BTreeMap<String, Resolver>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_source(&mut self, plugin: impl SourcePlugin + 'static) {
        self.plugins
            .insert(plugin.name().to_owned(), Plugin::Source(Arc::new(plugin)));
    }

    pub fn add_sink(&mut self, plugin: impl SinkPlugin + 'static) {
        self.plugins
            .insert(plugin.name().to_owned(), Plugin::Sink(Arc::new(plugin)));
    }

    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.plugins.get(name)
    }

    /// Registers a connector type resolved from its config (e.g. `wasm`).
    pub fn add_resolver(&mut self, name: &str, resolver: impl PluginResolver + 'static) {
        self.resolvers
            .insert(name.to_owned(), Resolver(Arc::new(resolver)));
    }

    /// The resolver registered as `name`.
    pub fn resolver(&self, name: &str) -> Option<&dyn PluginResolver> {
        self.resolvers.get(name).map(|r| &*r.0)
    }

    /// The plugin for connector type `name` with this connector config: a registered type, or
    /// one a resolver picks from the config. `None` when `name` is unknown.
    pub fn lookup(
        &self,
        name: &str,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Result<Plugin, Vec<FieldError>>> {
        if let Some(plugin) = self.plugins.get(name) {
            return Some(Ok(plugin.clone()));
        }
        self.resolvers.get(name).map(|r| r.0.resolve(config))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }

    /// Names of every connector type, registered and resolved, in order.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .plugins
            .keys()
            .chain(self.resolvers.keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names
    }
}
