//! The connector types of this binary: every built-in connector crate registers itself here,
//! then the `wasm` type and the WebAssembly plugins of a plugins directory.

use std::path::Path;

use sluice_connector_api::Registry;

/// All built-in connector types, and `wasm` (a component named by the config's `plugin`).
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    sluice_connector_datagen::register(&mut registry);
    sluice_connector_file::register(&mut registry);
    sluice_connector_http::register(&mut registry);
    sluice_connector_postgres::register(&mut registry);
    sluice_connector_s3::register(&mut registry);
    sluice_wasm::register(&mut registry, None);
    registry
}

/// The built-in types plus every plugin in `plugins_dir`. A plugin that cannot be loaded is
/// logged and left out; the others are registered.
pub fn with_plugins(plugins_dir: Option<&Path>) -> Registry {
    let mut registry = builtin();
    if let Some(dir) = plugins_dir {
        let (loaded, failed) = sluice_wasm::register(&mut registry, Some(dir));
        for plugin in &loaded {
            tracing::info!(plugin = plugin.name(), kind = plugin.kind().as_str(), path = %plugin.path().display(), "plugin registered");
        }
        for error in &failed {
            tracing::error!(error = %error, "plugin not registered");
        }
    }
    registry
}
