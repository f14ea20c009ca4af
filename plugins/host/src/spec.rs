//! Config specs: the fields a plugin declares, plus the host's own sandbox fields, as one
//! [`ConfigSpec`] so plugin configs are validated like built-in ones.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value as Json, json};
use sluice_connector_api::{ConfigField, ConfigSpec, ConnectorConfig, FieldKind, Validator};

use crate::bindings::types;
use crate::error::{Result, WasmError};
use crate::sandbox::{DEFAULT_CALL_TIMEOUT, DEFAULT_MEMORY_LIMIT_MIB, Sandbox};

/// The field naming the component file for `connector: wasm` and `type: wasm` transforms.
pub const PLUGIN_FIELD: &str = "plugin";
pub const MEMORY_LIMIT_FIELD: &str = "memory_limit_mib";
pub const CALL_TIMEOUT_FIELD: &str = "call_timeout";
pub const READ_ONLY_DIRS_FIELD: &str = "read_only_dirs";
pub const ALLOWED_HOSTS_FIELD: &str = "allowed_hosts";

/// The host's sandbox fields, accepted by every plugin.
pub fn sandbox_spec() -> ConfigSpec {
    ConfigSpec::new()
        .optional(
            MEMORY_LIMIT_FIELD,
            FieldKind::Int,
            DEFAULT_MEMORY_LIMIT_MIB,
            "Most memory one plugin instance may use, in MiB; growing past it fails the task.",
        )
        .check(Validator::range(1, 4096))
        .optional(
            CALL_TIMEOUT_FIELD,
            FieldKind::Duration,
            DEFAULT_CALL_TIMEOUT.as_millis() as u64,
            "Most time one call into the plugin may take; a call that takes longer fails the task.",
        )
        .check(Validator::min(1))
        .optional(
            READ_ONLY_DIRS_FIELD,
            FieldKind::List,
            json!([]),
            "Host directories the plugin may read (preopened read-only at the same path); none by default.",
        )
        .local_path()
        .optional(
            ALLOWED_HOSTS_FIELD,
            FieldKind::List,
            json!([]),
            "Host names the plugin may send HTTP requests to (wasi-http); none by default.",
        )
}

/// The spec of a plugin used through `connector: wasm` (or a `type: wasm` transform): the
/// `plugin` path, the sandbox fields and the plugin's own.
pub fn path_field_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required(
            PLUGIN_FIELD,
            FieldKind::String,
            "Path of the plugin's WebAssembly component (.wasm).",
        )
        .check(Validator::NonEmpty)
        .local_path()
}

/// The fields a plugin declared.
#[derive(Debug, Clone, Default)]
pub struct PluginSpec {
    pub fields: Vec<ConfigField>,
}

impl PluginSpec {
    pub(crate) fn from_fields(plugin: &str, fields: Vec<types::ConfigField>) -> Result<Self> {
        let reserved = sandbox_spec();
        let mut out = Vec::with_capacity(fields.len());
        for field in fields {
            let contract = |message: String| WasmError::Contract {
                plugin: plugin.to_owned(),
                message,
            };
            if field.name == PLUGIN_FIELD || reserved.field(&field.name).is_some() {
                return Err(contract(format!(
                    "spec: field `{}` is reserved for the host",
                    field.name
                )));
            }
            let kind = match field.kind.as_str() {
                "string" => FieldKind::String,
                "int" => FieldKind::Int,
                "float" => FieldKind::Float,
                "bool" => FieldKind::Bool,
                "duration" => FieldKind::Duration,
                "list" => FieldKind::List,
                other => {
                    return Err(contract(format!(
                        "spec: field `{}` has kind `{other}`; expected one of string, int, float, bool, duration, list",
                        field.name
                    )));
                }
            };
            // A default is JSON text; a bare word is taken as a string.
            let default = field
                .default
                .map(|d| serde_json::from_str(&d).unwrap_or(Json::String(d)));
            out.push(ConfigField {
                name: field.name,
                kind,
                required: field.required && default.is_none(),
                default,
                doc: field.doc,
                secret: field.secret,
                local_path: false,
                validators: Vec::new(),
            });
        }
        Ok(Self { fields: out })
    }

    /// The whole spec: `plugin` (when `with_path`), the sandbox fields, then the plugin's own.
    pub fn config_spec(&self, with_path: bool) -> ConfigSpec {
        let mut spec = if with_path {
            path_field_spec()
        } else {
            ConfigSpec::new()
        };
        spec.fields.extend(sandbox_spec().fields);
        spec.fields.extend(self.fields.iter().cloned());
        spec
    }

    /// The plugin's own fields of a validated config, as the key/value pairs `open` receives:
    /// strings as they are, everything else as JSON text.
    pub fn plugin_config(&self, config: &ConnectorConfig) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter_map(|f| {
                let value = config.get(&f.name)?;
                let text = match value {
                    Json::String(s) => s.clone(),
                    Json::Null => return None,
                    other => other.to_string(),
                };
                Some((f.name.clone(), text))
            })
            .collect()
    }
}

/// The sandbox a validated config asks for.
pub fn sandbox_from(config: &ConnectorConfig) -> Sandbox {
    let list = |key: &str| -> Vec<String> {
        config
            .get(key)
            .and_then(Json::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let defaults = Sandbox::default();
    Sandbox {
        memory_limit: config
            .get_i64(MEMORY_LIMIT_FIELD)
            .and_then(|m| u64::try_from(m).ok())
            .map_or(defaults.memory_limit, |m| m * 1024 * 1024),
        call_timeout: config
            .get_i64(CALL_TIMEOUT_FIELD)
            .and_then(|m| u64::try_from(m).ok())
            .map_or(defaults.call_timeout, Duration::from_millis),
        read_only_dirs: list(READ_ONLY_DIRS_FIELD)
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        allowed_hosts: list(ALLOWED_HOSTS_FIELD),
    }
}
