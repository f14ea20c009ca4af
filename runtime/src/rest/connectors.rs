//! `/connectors` and friends.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use sluice_connector_api::Plugin;

use super::error::Body;
use super::forward::on_leader;
use super::{Api, ApiError};
use crate::cluster::TaskId;
use crate::config::{
    PathPolicy, check_local_paths, flat_from_pipeline, mask_flat, pipeline_from_flat,
};
use crate::storage::{ConfigState, RunState, Status, TargetState};

pub(crate) async fn root(State(api): State<Api>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("SLUICE_GIT_COMMIT").unwrap_or("unknown"),
        "kafka_cluster_id": &*api.kafka_cluster_id,
    }))
}

fn connector_type(api: &Api, props: &Map<String, Value>) -> &'static str {
    crate::config::plugin_of(props, api.cluster.registry()).map_or("unknown", |p| match p {
        Plugin::Source(_) => "source",
        Plugin::Sink(_) => "sink",
    })
}

fn props<'a>(state: &'a ConfigState, name: &str) -> Result<&'a Map<String, Value>, ApiError> {
    state
        .connectors
        .get(name)
        .ok_or_else(|| ApiError::not_found(name))
}

fn info_json(api: &Api, state: &ConfigState, name: &str) -> Result<Value, ApiError> {
    let props = props(state, name)?;
    let tasks: Vec<Value> = (0..state.task_count(name))
        .map(|task| json!({"connector": name, "task": task}))
        .collect();
    Ok(json!({
        "name": name,
        "config": mask_flat(props, api.cluster.registry()),
        "tasks": tasks,
        "type": connector_type(api, props),
    }))
}

fn status_entry(status: Option<Status>) -> Map<String, Value> {
    let mut entry = Map::new();
    match status {
        Some(s) => {
            entry.insert("state".into(), json!(s.state));
            entry.insert("worker_id".into(), json!(s.worker_id));
            if let Some(trace) = s.trace {
                entry.insert("trace".into(), json!(trace));
            }
            // Not in Kafka Connect's status (it has JMX for this); clients ignore extra fields.
            if let Some(skipped) = s.records_skipped {
                entry.insert("errors".into(), json!({"records_skipped": skipped}));
            }
            if let Some(restarts) = s.restarts {
                entry.insert("restarts".into(), json!(restarts));
            }
        }
        None => {
            entry.insert("state".into(), json!(RunState::Unassigned));
            entry.insert("worker_id".into(), json!(""));
        }
    }
    entry
}

fn status_json(api: &Api, state: &ConfigState, name: &str) -> Result<Value, ApiError> {
    let props = props(state, name)?;
    let store = &api.cluster.status;
    let mut connector = status_entry(store.connector(name));
    if state.target(name) == TargetState::Stopped {
        connector.insert("state".into(), json!(RunState::Stopped));
    }
    let tasks: Vec<Value> = (0..state.task_count(name))
        .map(|task| {
            let mut entry = Map::new();
            entry.insert("id".into(), json!(task));
            entry.extend(status_entry(store.task(&TaskId::new(name, task))));
            Value::Object(entry)
        })
        .collect();
    Ok(json!({
        "name": name,
        "connector": connector,
        "tasks": tasks,
        "type": connector_type(api, props),
    }))
}

pub(crate) async fn list(State(api): State<Api>, RawQuery(query): RawQuery) -> Response {
    let state = api.cluster.configs.snapshot();
    let expand: Vec<String> = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.strip_prefix("expand="))
        .map(str::to_owned)
        .collect();
    if expand.is_empty() {
        let names: Vec<&String> = state.connectors.keys().collect();
        return Json(json!(names)).into_response();
    }
    let mut out = Map::new();
    for name in state.connectors.keys() {
        let mut entry = Map::new();
        if expand.iter().any(|e| e == "status")
            && let Ok(status) = status_json(&api, &state, name)
        {
            entry.insert("status".into(), status);
        }
        if expand.iter().any(|e| e == "info")
            && let Ok(info) = info_json(&api, &state, name)
        {
            entry.insert("info".into(), info);
        }
        out.insert(name.clone(), Value::Object(entry));
    }
    Json(Value::Object(out)).into_response()
}

/// Validates a flat config for connector `name`; the error lists every problem. Off the async
/// threads: resolving `${file:...}` reads files and a WASM connector's spec loads a component.
async fn validated(api: &Api, name: &str, props: &Map<String, Value>) -> Result<(), ApiError> {
    let (cluster, name, props) = (api.cluster.clone(), name.to_owned(), props.clone());
    let checked = tokio::task::spawn_blocking(move || {
        // Paths first: a WASM connector's plugin is loaded only from an allowed directory.
        let refused = check_local_paths(
            &props,
            cluster.registry(),
            &PathPolicy::new(cluster.worker_config()),
        );
        if !refused.is_empty() {
            return Err(refused);
        }
        pipeline_from_flat(
            &name,
            &props,
            cluster.registry(),
            &cluster.worker_config().config_providers,
        )
        .map(drop)
    })
    .await
    .map_err(ApiError::internal)?;
    checked.map_err(|errors| {
        ApiError::bad_request(format!(
            "Connector configuration is invalid and contains the following {} error(s):\n{}\nYou can also find the above list of errors at the endpoint `/connector-plugins/{{connectorType}}/config/validate`",
            errors.len(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 200
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "connector name `{name}` is invalid; expected 1-200 letters, digits, `.`, `_` or `-`"
        )));
    }
    Ok(())
}

/// Puts stored values back for secret fields a client sent back masked.
fn unmask(api: &Api, flat: &mut Map<String, Value>, stored: &Map<String, Value>) {
    let masked = mask_flat(stored, api.cluster.registry());
    for (key, value) in flat.iter_mut() {
        let was_masked = value.as_str() == Some(sluice_connector_api::MASK)
            && masked.get(key).is_some_and(|m| m == value);
        if was_masked && let Some(original) = stored.get(key) {
            *value = original.clone();
        }
        // Masked entries of a map field (a header holding a credential).
        if let (Value::Object(entries), Some(Value::Object(shown)), Some(Value::Object(original))) =
            (value, masked.get(key), stored.get(key))
        {
            for (entry, v) in entries.iter_mut() {
                let hidden = v.as_str() == Some(sluice_connector_api::MASK)
                    && shown.get(entry).is_some_and(|m| m == v);
                if hidden && let Some(original) = original.get(entry) {
                    *v = original.clone();
                }
            }
        }
    }
}

/// A config body: Kafka Connect's flat map, or Sluice's pipeline shape (`connector`, `tasks`,
/// nested `config`). Values other than strings are kept as given.
fn flat_config(name: &str, body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut flat =
        if body.get("config").is_some_and(Value::is_object) || body.contains_key("connector") {
            flat_from_pipeline(body)
        } else {
            body.clone()
        };
    match flat.get("name").and_then(Value::as_str) {
        Some(given) if given != name => {
            return Err(ApiError::bad_request(format!(
                "Connector name configuration ({given}) doesn't match connector name in the URL ({name})"
            )));
        }
        _ => {}
    }
    flat.insert("name".into(), json!(name));
    Ok(flat)
}

pub(crate) async fn create(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, Some(body.clone()));
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("Connector name must be specified"))?
        .to_owned();
    valid_name(&name)?;
    let config = body
        .get("config")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            ApiError::bad_request("Connector config must be specified as an object under `config`")
        })?;
    let flat = flat_config(&name, config)?;
    let initial = match body.get("initial_state").and_then(Value::as_str) {
        None | Some("RUNNING") => TargetState::Started,
        Some("PAUSED") => TargetState::Paused,
        Some("STOPPED") => TargetState::Stopped,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "initial_state `{other}` is invalid; expected RUNNING, PAUSED or STOPPED"
            )));
        }
    };
    let _guard = api.cluster.write_guard().await;
    if api
        .cluster
        .configs
        .snapshot()
        .connectors
        .contains_key(&name)
    {
        return Err(ApiError::conflict(format!(
            "Connector {name} already exists"
        )));
    }
    validated(&api, &name, &flat).await?;
    api.cluster.configs.put_target(&name, initial).await?;
    api.cluster.configs.put_connector(&name, &flat).await?;
    let state = api.cluster.configs.snapshot();
    Ok((StatusCode::CREATED, Json(info_json(&api, &state, &name)?)).into_response())
}

pub(crate) async fn info(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let state = api.cluster.configs.snapshot();
    info_json(&api, &state, &name).map(Json)
}

pub(crate) async fn config(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let state = api.cluster.configs.snapshot();
    let props = props(&state, &name)?;
    Ok(Json(Value::Object(mask_flat(
        props,
        api.cluster.registry(),
    ))))
}

pub(crate) async fn put_config(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, Some(body.clone()));
    valid_name(&name)?;
    let body = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the connector config must be a JSON object"))?;
    let mut flat = flat_config(&name, body)?;
    let _guard = api.cluster.write_guard().await;
    let state = api.cluster.configs.snapshot();
    // A client that read the config (secrets masked) and writes it back keeps the stored secret.
    if let Some(stored) = state.connectors.get(&name) {
        unmask(&api, &mut flat, stored);
    }
    validated(&api, &name, &flat).await?;
    let existed = state.connectors.contains_key(&name);
    if !existed {
        api.cluster
            .configs
            .put_target(&name, TargetState::Started)
            .await?;
    }
    api.cluster.configs.put_connector(&name, &flat).await?;
    let state = api.cluster.configs.snapshot();
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(info_json(&api, &state, &name)?)).into_response())
}

pub(crate) async fn delete(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    let _guard = api.cluster.write_guard().await;
    props(&api.cluster.configs.snapshot(), &name)?;
    api.cluster.configs.delete_connector(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn status(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let state = api.cluster.configs.snapshot();
    status_json(&api, &state, &name).map(Json)
}

fn flag(query: &Option<String>, name: &str) -> Result<bool, ApiError> {
    let Some(query) = query else {
        return Ok(false);
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
            // Case-insensitive, as Java's Boolean.parseBoolean (Python clients send `True`).
            return match value.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(ApiError::bad_request(format!(
                    "query parameter {name}={other} is invalid; expected true or false"
                ))),
            };
        }
    }
    Ok(false)
}

pub(crate) async fn restart(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    let include_tasks = flag(&query, "includeTasks")?;
    let only_failed = flag(&query, "onlyFailed")?;
    let state = api.cluster.configs.snapshot();
    let mut status = status_json(&api, &state, &name)?;
    api.cluster
        .configs
        .request_restart(&name, include_tasks, only_failed)
        .await?;
    if !include_tasks && !only_failed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // The answer shows what will restart as RESTARTING, as Kafka Connect does.
    let restarting = |entry: &mut Value| {
        let failed = entry["state"] == json!(RunState::Failed);
        if !only_failed || failed {
            entry["state"] = json!(RunState::Restarting);
        }
    };
    restarting(&mut status["connector"]);
    if include_tasks && let Some(tasks) = status["tasks"].as_array_mut() {
        tasks.iter_mut().for_each(restarting);
    }
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

async fn set_target(api: &Api, name: &str, target: TargetState) -> Result<(), ApiError> {
    props(&api.cluster.configs.snapshot(), name)?;
    api.cluster.configs.put_target(name, target).await?;
    Ok(())
}

pub(crate) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    set_target(&api, &name, TargetState::Paused).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(crate) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    set_target(&api, &name, TargetState::Started).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(crate) async fn stop(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    let _guard = api.cluster.write_guard().await;
    set_target(&api, &name, TargetState::Stopped).await?;
    // A stopped connector has no tasks (KIP-875); resuming generates them again.
    api.cluster.put_task_configs_locked(&name, &[]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn tasks(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let state = api.cluster.configs.snapshot();
    let props = props(&state, &name)?;
    let spec = crate::config::plugin_of(props, api.cluster.registry()).map(|p| p.spec());
    let tasks: Vec<Value> = state
        .tasks
        .get(&name)
        .map(|tasks| {
            tasks
                .iter()
                .enumerate()
                .map(|(i, config)| {
                    let config = spec
                        .as_ref()
                        .map_or_else(|| config.clone(), |s| s.mask(config));
                    json!({"id": {"connector": name, "task": i}, "config": config})
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!(tasks)))
}

/// Internal: the worker running a connector hands its task configs to the leader.
pub(crate) async fn put_tasks(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    Body(body): Body<Vec<Map<String, Value>>>,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, Some(json!(body)));
    props(&api.cluster.configs.snapshot(), &name)?;
    api.cluster.put_task_configs(&name, &body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn task_status(
    State(api): State<Api>,
    Path((name, task)): Path<(String, u32)>,
) -> Result<Json<Value>, ApiError> {
    let state = api.cluster.configs.snapshot();
    props(&state, &name)?;
    if task >= state.task_count(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("No status found for task {name}-{task}"),
        ));
    }
    let mut entry = Map::new();
    entry.insert("id".into(), json!(task));
    entry.extend(status_entry(
        api.cluster.status.task(&TaskId::new(&name, task)),
    ));
    Ok(Json(Value::Object(entry)))
}

pub(crate) async fn restart_task(
    State(api): State<Api>,
    Path((name, task)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    let state = api.cluster.configs.snapshot();
    props(&state, &name)?;
    if task >= state.task_count(&name) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Task {name}-{task} not found"),
        ));
    }
    api.cluster
        .configs
        .request_task_restart(&name, task)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn topics(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    props(&api.cluster.configs.snapshot(), &name)?;
    let topics: Vec<String> = api.cluster.status.topics(&name).into_iter().collect();
    let mut out = Map::new();
    out.insert(name, json!({ "topics": topics }));
    Ok(Json(Value::Object(out)))
}

pub(crate) async fn reset_topics(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    props(&api.cluster.configs.snapshot(), &name)?;
    api.cluster.status.reset_topics(&name).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
