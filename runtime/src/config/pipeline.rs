//! Pipeline files: one connector each.

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, FieldError, FieldKind, Plugin, Registry, Validator,
};

use super::worker::converter_spec;
use crate::convert::ConverterConfig;

/// Most tasks one connector may ask for.
const MAX_TASKS: i64 = 1024;

/// The runtime's part of a pipeline file; `config` is the connector's own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct PipelineConfig {
    /// Unique connector name: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Connector type, as listed by `sluice plugins`.
    pub connector: String,
    /// Most tasks to run.
    pub tasks: u32,
    /// The connector's configuration.
    pub config: Map<String, Json>,
    /// Key converter; the worker's when unset.
    pub key_converter: Option<ConverterConfig>,
    /// Value converter; the worker's when unset.
    pub value_converter: Option<ConverterConfig>,
    /// What to do with records that cannot be handled.
    #[serde(default)]
    pub errors: crate::task::ErrorPolicy,
}

/// A validated pipeline: the runtime settings, the connector type, and its normalised config.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub settings: PipelineConfig,
    pub plugin: Plugin,
    pub config: ConnectorConfig,
    /// The transform chain (empty when none is configured), shared by the connector's tasks.
    pub transforms: std::sync::Arc<crate::transform::Chain>,
    /// The `transforms`/`predicates` entries as written, to hand the pipeline on unchanged.
    pub transform_config: Map<String, Json>,
}

/// Keys of a pipeline document (or flat config) that configure transforms and predicates.
pub(crate) fn is_transform_key(key: &str) -> bool {
    key == "transforms"
        || key == "predicates"
        || key.starts_with("transforms.")
        || key.starts_with("predicates.")
}

fn valid_name(value: &Json) -> Result<(), String> {
    let name = value.as_str().unwrap_or_default();
    if !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        Ok(())
    } else {
        Err(format!(
            "expected 1-200 letters, digits, `.`, `_` or `-`, got {value}"
        ))
    }
}

pub fn pipeline_spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("name", FieldKind::String, "Unique connector name.")
        .check(Validator::Custom(std::sync::Arc::new(valid_name)))
        .required(
            "connector",
            FieldKind::String,
            "Connector type, as listed by `sluice plugins`.",
        )
        .optional("tasks", FieldKind::Int, 1, "Most tasks to run.")
        .check(Validator::range(1, MAX_TASKS))
        .optional(
            "config",
            FieldKind::Map,
            json!({}),
            "The connector's configuration.",
        )
        .maybe(
            "key_converter",
            FieldKind::Object(converter_spec()),
            "Key converter; the worker's when unset.",
        )
        .maybe(
            "value_converter",
            FieldKind::Object(converter_spec()),
            "Value converter; the worker's when unset.",
        )
        .optional(
            "errors",
            FieldKind::Object(crate::task::errors_spec()),
            json!({}),
            "Error tolerance, retries and the dead-letter topic (Kafka Connect's errors.*).",
        )
}

/// Validates the runtime fields and the connector config together, so every problem is reported.
pub(crate) fn validate_pipeline(
    value: &Map<String, Json>,
    registry: &Registry,
) -> Result<Pipeline, Vec<FieldError>> {
    let mut errors = Vec::new();
    // Transforms and predicates have their own validation (each names the transform).
    let (transform_config, value): (Map<String, Json>, Map<String, Json>) = value
        .clone()
        .into_iter()
        .partition(|(k, _)| is_transform_key(k));
    let value = &value;
    let chain = if transform_config.is_empty() {
        Some(crate::transform::Chain::default())
    } else {
        let built = if transform_config
            .get("transforms")
            .is_some_and(Json::is_array)
        {
            crate::transform::chain_from_pipeline(&transform_config)
        } else {
            crate::transform::chain_from_flat(&transform_config)
        };
        built.map_err(|e| errors.extend(e)).ok()
    };
    let settings = pipeline_spec()
        .validate(value)
        .map_err(|e| errors.extend(e))
        .ok();
    let raw_config = match value.get("config") {
        Some(Json::Object(raw)) => raw.clone(),
        _ => Map::new(),
    };
    let plugin = match value.get("connector").and_then(Json::as_str) {
        Some(name) => match registry.lookup(name, &raw_config) {
            Some(Ok(plugin)) => Some(plugin),
            Some(Err(problems)) => {
                errors.extend(problems.into_iter().map(|e| e.under("config")));
                None
            }
            None => {
                errors.push(FieldError::new(
                    "connector",
                    format!(
                        "unknown connector type `{name}`; expected one of: {}",
                        registry.names().join(", ")
                    ),
                ));
                None
            }
        },
        None => None,
    };
    let connector_config = match (&plugin, value.get("config").unwrap_or(&json!({}))) {
        (Some(plugin), Json::Object(raw)) => plugin
            .spec()
            .validate(raw)
            .map_err(|e| errors.extend(e.into_iter().map(|e| e.under("config"))))
            .ok(),
        _ => None,
    };
    match (settings, plugin, connector_config, chain) {
        (Some(settings), Some(plugin), Some(config), Some(chain)) if errors.is_empty() => {
            let settings: PipelineConfig = settings
                .parse()
                .map_err(|e| vec![FieldError::new("", e.to_string())])?;
            Ok(Pipeline {
                settings,
                plugin,
                config,
                transforms: std::sync::Arc::new(chain),
                transform_config,
            })
        }
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        crate::registry::builtin()
    }

    #[test]
    fn reports_runtime_and_connector_mistakes_together() {
        let value = json!({
            "name": "bad name!",
            "connector": "datagen",
            "tasks": 0,
            "config": {"count": "many"},
        });
        let errors = validate_pipeline(value.as_object().unwrap(), &registry()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "tasks", "config.topic", "config.count"]);
    }

    #[test]
    fn unknown_connector_lists_the_known_ones() {
        let value = json!({"name": "n", "connector": "kafkaesque"});
        let errors = validate_pipeline(value.as_object().unwrap(), &registry()).unwrap_err();
        assert_eq!(errors[0].field, "connector");
        assert!(
            errors[0]
                .message
                .contains("datagen, file-sink, file-source"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn valid_pipeline_has_normalised_config() {
        let value =
            json!({"name": "n", "connector": "datagen", "config": {"topic": "t", "count": "10"}});
        let pipeline = validate_pipeline(value.as_object().unwrap(), &registry()).unwrap();
        assert_eq!(pipeline.config.get_i64("count"), Some(10));
        assert_eq!(pipeline.settings.tasks, 1);
    }
}
