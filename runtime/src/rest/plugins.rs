//! `/connector-plugins`: the connector types this worker has, their config definitions, and
//! validation in Kafka Connect's `ConfigInfos` shape.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use sluice_connector_api::{ConfigField, FieldKind, MASK, Plugin};

use super::error::Body;
use super::{Api, ApiError};
use crate::config::{PathPolicy, check_local_paths, pipeline_from_flat};

fn kind_name(plugin: &Plugin) -> &'static str {
    match plugin {
        Plugin::Source(_) => "source",
        Plugin::Sink(_) => "sink",
    }
}

/// The connector types; with `?connectorsOnly=false` (as in Kafka Connect, KIP-769) also the
/// transforms (built-in, `wasm`, and transform plugins from the plugins directory) and
/// predicates.
pub(crate) async fn list(State(api): State<Api>, RawQuery(query): RawQuery) -> Json<Value> {
    let version = env!("CARGO_PKG_VERSION");
    let mut plugins: Vec<Value> = api
        .cluster
        .registry()
        .iter()
        .map(|p| json!({"class": p.name(), "type": kind_name(p), "version": version}))
        .collect();
    let connectors_only = !query
        .unwrap_or_default()
        .split('&')
        .any(|p| p.eq_ignore_ascii_case("connectorsOnly=false"));
    if !connectors_only {
        let transforms = crate::transform::transform_classes()
            .into_iter()
            .chain(std::iter::once(crate::transform::WASM_TYPE.to_owned()))
            .chain(sluice_wasm::named_transforms());
        plugins.extend(
            transforms.map(|c| json!({"class": c, "type": "transformation", "version": version})),
        );
        plugins.extend(
            crate::transform::predicate_classes()
                .into_iter()
                .map(|c| json!({"class": c, "type": "predicate", "version": version})),
        );
    }
    Json(json!(plugins))
}

fn plugin<'a>(api: &'a Api, kind: &str) -> Result<&'a Plugin, ApiError> {
    api.cluster.registry().get(kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Failed to find any class that implements Connector and which name matches {kind}; available: {}",
                api.cluster.registry().names().join(", ")
            ),
        )
    })
}

fn type_name(field: &ConfigField) -> &'static str {
    if field.secret {
        return "PASSWORD";
    }
    match field.kind {
        FieldKind::String | FieldKind::Map | FieldKind::Object(_) => "STRING",
        FieldKind::Int | FieldKind::Duration => "LONG",
        FieldKind::Float => "DOUBLE",
        FieldKind::Bool => "BOOLEAN",
        FieldKind::List => "LIST",
    }
}

/// The runtime's own keys, described like connector fields.
fn runtime_definitions() -> Vec<Value> {
    [
        (
            "name",
            "STRING",
            true,
            "Globally unique name to use for this connector.",
        ),
        (
            "connector.class",
            "STRING",
            true,
            "The connector type, as listed by GET /connector-plugins.",
        ),
        (
            "tasks.max",
            "INT",
            false,
            "Maximum number of tasks to use for this connector.",
        ),
        (
            "key.converter",
            "CLASS",
            false,
            "Converter for record keys: json, string or bytes (or Kafka Connect's class names).",
        ),
        (
            "value.converter",
            "CLASS",
            false,
            "Converter for record values: json, string or bytes (or Kafka Connect's class names).",
        ),
    ]
    .iter()
    .enumerate()
    .map(|(order, (name, kind, required, doc))| {
        json!({
            "name": name, "type": kind, "required": required, "default_value": null,
            "importance": "HIGH", "documentation": doc, "group": "Common", "width": "MEDIUM",
            "display_name": name, "dependents": [], "order": order + 1,
        })
    })
    .collect()
}

fn definition(field: &ConfigField, order: usize) -> Value {
    let default = match &field.default {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => json!(s),
        Some(other) => json!(other.to_string()),
    };
    json!({
        "name": field.name,
        "type": type_name(field),
        "required": field.required,
        "default_value": default,
        "importance": if field.required { "HIGH" } else { "MEDIUM" },
        "documentation": field.doc,
        "group": "Connector",
        "width": "MEDIUM",
        "display_name": field.name,
        "dependents": [],
        "order": order,
    })
}

pub(crate) async fn config_definition(
    State(api): State<Api>,
    Path(kind): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let spec = match api.cluster.registry().resolver(&kind) {
        Some(resolver) => resolver.spec(),
        None => plugin(&api, &kind)?.spec(),
    };
    let mut defs = runtime_definitions();
    defs.extend(
        spec.fields
            .iter()
            .enumerate()
            .map(|(i, f)| definition(f, i + 1)),
    );
    Ok(Json(json!(defs)))
}

pub(crate) async fn validate(
    State(api): State<Api>,
    Path(kind): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    if api.cluster.registry().resolver(&kind).is_none() {
        plugin(&api, &kind)?;
    }
    let mut flat = body.clone();
    if !flat.contains_key("connector.class") && !flat.contains_key("connector") {
        flat.insert("connector.class".into(), json!(kind));
    }
    let name = flat
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("validate")
        .to_owned();
    // Off the async threads: a WASM connector's spec loads a component, and resolving
    // `${file:...}` reads files.
    let (cluster, checked) = (api.cluster.clone(), flat.clone());
    let (described, errors) = tokio::task::spawn_blocking(move || {
        let registry = cluster.registry();
        // Paths first: a WASM connector's plugin is loaded only from an allowed directory.
        let refused = check_local_paths(
            &checked,
            registry,
            &PathPolicy::new(cluster.worker_config()),
        );
        // `wasm` has no fixed spec: it is the spec of the component the config's `plugin`
        // names (the resolver's own fields when that cannot be loaded; the errors say why).
        let described = match registry.resolver(&kind) {
            Some(resolver) if !refused.is_empty() => Some((kind.clone(), resolver.spec())),
            Some(resolver) => match resolver.resolve(&body) {
                Ok(plugin) => Some((kind.clone(), plugin.spec())),
                Err(_) => Some((kind.clone(), resolver.spec())),
            },
            None => registry
                .get(&kind)
                .map(|plugin| (plugin.name().to_owned(), plugin.spec())),
        };
        let errors = if refused.is_empty() {
            pipeline_from_flat(
                &name,
                &checked,
                registry,
                &cluster.worker_config().config_providers,
            )
            .err()
            .unwrap_or_default()
        } else {
            refused
        };
        (described, errors)
    })
    .await
    .map_err(ApiError::internal)?;
    let (plugin_name, spec) =
        described.ok_or_else(|| ApiError::internal("the connector type disappeared"))?;
    let errors_for = |key: &str| -> Vec<String> {
        errors
            .iter()
            .filter(|e| e.field == key || e.field == key.replace('.', "_"))
            .map(|e| e.message.clone())
            .collect()
    };
    let shown = |key: &str, secret: bool| -> Value {
        match flat.get(key).or_else(|| flat.get(&key.replace('_', "."))) {
            None | Some(Value::Null) => Value::Null,
            Some(_) if secret => json!(MASK),
            Some(Value::Object(entries)) => {
                json!(Value::Object(sluice_connector_api::mask_entries(entries)).to_string())
            }
            Some(Value::String(s)) => json!(s),
            Some(other) => json!(other.to_string()),
        }
    };
    let mut configs = Vec::new();
    let mut described = Vec::new();
    for def in runtime_definitions() {
        let key = def["name"].as_str().unwrap_or_default().to_owned();
        configs.push(json!({
            "definition": def,
            "value": {"name": key, "value": shown(&key, false), "recommended_values": [], "errors": errors_for(&key), "visible": true},
        }));
        described.push(key);
    }
    for (i, field) in spec.fields.iter().enumerate() {
        configs.push(json!({
            "definition": definition(field, i + 1),
            "value": {
                "name": field.name,
                "value": shown(&field.name, field.secret),
                "recommended_values": [],
                "errors": errors_for(&field.name),
                "visible": true,
            },
        }));
        described.push(field.name.clone());
    }
    // Errors about keys no definition covers (unknown fields, converter settings...).
    for error in &errors {
        if !described
            .iter()
            .any(|d| *d == error.field || d.replace('_', ".") == error.field)
        {
            configs.push(json!({
                "definition": {"name": error.field, "type": "STRING", "required": false, "default_value": null,
                    "importance": "LOW", "documentation": "", "group": "Other", "width": "NONE",
                    "display_name": error.field, "dependents": [], "order": -1},
                "value": {"name": error.field, "value": shown(&error.field, false), "recommended_values": [], "errors": [error.message], "visible": true},
            }));
        }
    }
    Ok(Json(json!({
        "name": plugin_name,
        "error_count": errors.len(),
        "groups": ["Common", "Connector"],
        "configs": configs,
    })))
}
