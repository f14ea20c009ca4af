//! Connector configs in Kafka Connect's flat form, as the REST API takes them:
//! `{"connector.class": "datagen", "tasks.max": "2", "key.converter": "...", "topic": "t"}`.
//! Sluice's own names (`connector`, `tasks`, `key_converter`, snake_case connector fields) are
//! accepted too; dotted connector field names map to their snake_case form.

use serde_json::{Map, Value as Json, json};
use sluice_connector_api::{FieldError, FieldKind, Plugin, Registry};

use super::pipeline::{Pipeline, validate_pipeline};
use super::provider::{ProviderPolicy, resolve_recording, scrub};

const CONVERTERS: &[(&str, &str)] = &[
    ("org.apache.kafka.connect.json.JsonConverter", "json"),
    ("org.apache.kafka.connect.storage.StringConverter", "string"),
    (
        "org.apache.kafka.connect.converters.ByteArrayConverter",
        "bytes",
    ),
    ("json", "json"),
    ("string", "string"),
    ("bytes", "bytes"),
];

/// Where each user-given key went, so errors can name the key the user wrote.
struct Renames(Vec<(String, String)>);

impl Renames {
    fn user_key(&self, field: &str) -> String {
        self.0
            .iter()
            .find(|(to, _)| to == field)
            .map(|(_, from)| from.clone())
            .unwrap_or_else(|| field.to_owned())
    }
}

/// The connector type of a flat config (`connector.class`), resolved with the config itself so
/// `wasm` finds the component its `plugin` key names. `None` when unknown or not loadable.
pub(crate) fn plugin_of(flat: &Map<String, Json>, registry: &Registry) -> Option<Plugin> {
    let name = flat
        .get("connector.class")
        .or_else(|| flat.get("connector"))
        .and_then(Json::as_str)?;
    registry.lookup(name, flat).and_then(Result::ok)
}

/// The pipeline-file shape of a flat config, and where each key went.
fn to_pipeline_shape(
    name: &str,
    flat: &Map<String, Json>,
    registry: &Registry,
) -> (Map<String, Json>, Renames) {
    let mut out = Map::new();
    let mut config = Map::new();
    let mut renames = Vec::new();
    let mut key_converter = Map::new();
    let mut value_converter = Map::new();
    let mut errors = Map::new();
    let spec = plugin_of(flat, registry).map(|p| p.spec());
    out.insert("name".into(), json!(name));
    for (key, value) in flat {
        if super::pipeline::is_transform_key(key) {
            out.insert(key.clone(), value.clone());
            continue;
        }
        match key.as_str() {
            "name" => {}
            "connector.class" | "connector" => {
                out.insert("connector".into(), value.clone());
                renames.push(("connector".to_owned(), key.clone()));
            }
            "tasks.max" | "tasks" => {
                out.insert("tasks".into(), value.clone());
                renames.push(("tasks".to_owned(), key.clone()));
            }
            "key_converter" | "value_converter" | "errors" if value.is_object() => {
                out.insert(key.clone(), value.clone());
            }
            "config" if value.is_object() => {
                for (k, v) in value.as_object().into_iter().flatten() {
                    config.insert(k.clone(), v.clone());
                    renames.push((format!("config.{k}"), format!("config.{k}")));
                }
            }
            _ => {
                if let Some(field) = error_setting(key) {
                    errors.insert(field.into(), value.clone());
                    renames.push((format!("errors.{field}"), key.clone()));
                    continue;
                }
                if let Some((side, setting)) = converter_setting(key) {
                    let target = if side == "key" {
                        &mut key_converter
                    } else {
                        &mut value_converter
                    };
                    match setting {
                        "" => {
                            let kind = value
                                .as_str()
                                .and_then(|v| CONVERTERS.iter().find(|(c, _)| *c == v))
                                .map_or_else(|| value.clone(), |(_, k)| json!(k));
                            target.insert("type".into(), kind);
                        }
                        "schemas.enable" => {
                            target.insert("schemas".into(), value.clone());
                        }
                        other => {
                            target.insert(other.replace('.', "_"), value.clone());
                        }
                    }
                    renames.push((
                        format!(
                            "{side}_converter.{}",
                            match setting {
                                "" => "type".to_owned(),
                                "schemas.enable" => "schemas".to_owned(),
                                other => other.replace('.', "_"),
                            }
                        ),
                        key.clone(),
                    ));
                    continue;
                }
                let snake = key.replace('.', "_");
                let field = match &spec {
                    Some(spec) if spec.field(key).is_none() && spec.field(&snake).is_some() => {
                        snake
                    }
                    _ => key.clone(),
                };
                renames.push((format!("config.{field}"), key.clone()));
                config.insert(field, value.clone());
            }
        }
    }
    for (name, converter) in [
        ("key_converter", key_converter),
        ("value_converter", value_converter),
    ] {
        if !converter.is_empty() {
            out.insert(name.into(), Json::Object(converter));
        }
    }
    if !errors.is_empty() {
        out.insert("errors".into(), Json::Object(errors));
    }
    out.insert("config".into(), Json::Object(config));
    (out, Renames(renames))
}

/// Kafka Connect's `errors.*` keys -> the pipeline's `errors` block fields.
fn error_setting(key: &str) -> Option<&'static str> {
    Some(match key {
        "errors.tolerance" => "tolerance",
        "errors.retry.timeout" => "retry_timeout",
        "errors.retry.delay.max.ms" => "retry_delay_max",
        "errors.log.enable" => "log",
        "errors.log.include.messages" => "log_include_messages",
        "errors.deadletterqueue.topic.name" => "dlq_topic",
        "errors.deadletterqueue.context.headers.enable" => "dlq_context_headers",
        _ => return None,
    })
}

/// `key.converter.schemas.enable` -> ("key", "schemas.enable"); `key.converter` -> ("key", "").
fn converter_setting(key: &str) -> Option<(&'static str, &str)> {
    for side in ["key", "value"] {
        let prefix = if side == "key" {
            "key.converter"
        } else {
            "value.converter"
        };
        if let Some(rest) = key.strip_prefix(prefix) {
            if rest.is_empty() {
                return Some((side, ""));
            }
            if let Some(setting) = rest.strip_prefix('.') {
                return Some((side, setting));
            }
        }
    }
    None
}

/// Validates a flat connector config, resolving provider references under `policy`; errors
/// name the keys as the user wrote them and show references as written, never their values.
pub fn pipeline_from_flat(
    name: &str,
    flat: &Map<String, Json>,
    registry: &Registry,
    policy: &ProviderPolicy,
) -> Result<Pipeline, Vec<FieldError>> {
    let mut resolved = Json::Object(flat.clone());
    let (provider_errors, substitutions) = resolve_recording(&mut resolved, policy);
    if !provider_errors.is_empty() {
        return Err(provider_errors);
    }
    let resolved = match resolved {
        Json::Object(map) => map,
        _ => Map::new(),
    };
    let (shape, renames) = to_pipeline_shape(name, &resolved, registry);
    validate_pipeline(&shape, registry).map_err(|errors| {
        let mut errors: Vec<FieldError> = errors
            .into_iter()
            .map(|mut e| {
                e.field = renames.user_key(&e.field);
                e
            })
            .collect();
        scrub(&mut errors, &substitutions);
        errors
    })
}

/// A copy of a flat config with secret fields (as the connector type declares them) masked.
pub fn mask_flat(flat: &Map<String, Json>, registry: &Registry) -> Map<String, Json> {
    let spec = plugin_of(flat, registry).map(|p| p.spec());
    let Some(spec) = spec else {
        return flat.clone();
    };
    flat.iter()
        .map(|(key, value)| {
            let field = spec
                .field(key)
                .or_else(|| spec.field(&key.replace('.', "_")));
            let secret = field.is_some_and(|f| f.secret);
            let shown = match (field, value) {
                (_, value) if secret && !value.is_null() => json!(sluice_connector_api::MASK),
                // A free-form map (http-sink's `headers`) hides its credential entries.
                (Some(f), Json::Object(entries)) if matches!(f.kind, FieldKind::Map) => {
                    Json::Object(sluice_connector_api::mask_entries(entries))
                }
                (_, value) => value.clone(),
            };
            (key.clone(), shown)
        })
        .collect()
}

/// A validated pipeline as a flat config (its transforms as written).
pub fn flat_from_pipeline_settings(pipeline: &super::Pipeline) -> Map<String, Json> {
    let mut flat = flat_from_settings(&pipeline.settings);
    flat.extend(pipeline.transform_config.clone());
    flat
}

/// A validated pipeline's settings as a flat config.
pub fn flat_from_settings(settings: &super::PipelineConfig) -> Map<String, Json> {
    let mut shape = Map::new();
    shape.insert("name".into(), json!(settings.name));
    shape.insert("connector".into(), json!(settings.connector));
    shape.insert("tasks".into(), json!(settings.tasks));
    shape.insert("config".into(), Json::Object(settings.config.clone()));
    if let Ok(errors) = serde_json::to_value(&settings.errors) {
        shape.insert("errors".into(), errors);
    }
    for (key, converter) in [
        ("key_converter", &settings.key_converter),
        ("value_converter", &settings.value_converter),
    ] {
        if let Some(converter) = converter
            && let Ok(value) = serde_json::to_value(converter)
        {
            shape.insert(key.into(), value);
        }
    }
    flat_from_pipeline(&shape)
}

/// A pipeline file entry (`name`, `connector`, `tasks`, `config`, converters) as a flat config.
pub fn flat_from_pipeline(pipeline: &Map<String, Json>) -> Map<String, Json> {
    let mut flat = Map::new();
    for (key, value) in pipeline {
        match key.as_str() {
            "config" => {
                if let Some(config) = value.as_object() {
                    for (k, v) in config {
                        flat.insert(k.clone(), v.clone());
                    }
                }
            }
            "connector" => {
                flat.insert("connector.class".into(), value.clone());
            }
            "tasks" => {
                flat.insert("tasks.max".into(), value.clone());
            }
            _ => {
                flat.insert(key.clone(), value.clone());
            }
        }
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_connect_names_map_to_a_pipeline() {
        let flat = json!({
            "connector.class": "datagen",
            "tasks.max": "3",
            "topic": "t",
            "count": "10",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
        });
        let pipeline = pipeline_from_flat(
            "n",
            flat.as_object().unwrap(),
            &crate::registry::builtin(),
            &ProviderPolicy::default(),
        )
        .unwrap();
        assert_eq!(pipeline.settings.tasks, 3);
        assert_eq!(pipeline.config.get_i64("count"), Some(10));
        let value = pipeline.settings.value_converter.unwrap();
        assert_eq!(value.kind, crate::convert::ConverterKind::Json);
        assert!(!value.schemas);
    }

    #[test]
    fn errors_name_the_keys_the_user_wrote() {
        let flat =
            json!({"connector.class": "datagen", "tasks.max": "0", "topic": "t", "count": "x"});
        let errors = pipeline_from_flat(
            "n",
            flat.as_object().unwrap(),
            &crate::registry::builtin(),
            &ProviderPolicy::default(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["tasks.max", "count"]);
    }
}
