//! `/connectors/{name}/offsets` (KIP-875). Source offsets live in the offsets topic; sink
//! offsets are the committed offsets of the connector's consumer group. Changing them needs the
//! connector STOPPED, so no task races the change.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sluice_connector_api::{Plugin, SourceOffset, SourcePartition};

use super::error::Body;
use super::forward::on_leader;
use super::{Api, ApiError};
use crate::kafka::group_offsets;
use std::time::Duration;

use crate::storage::{RunState, TargetState};

enum Kind {
    Source,
    Sink(Vec<String>),
}

fn kind(api: &Api, name: &str) -> Result<(Kind, TargetState, u32), ApiError> {
    let state = api.cluster.configs.snapshot();
    let props = state
        .connectors
        .get(name)
        .ok_or_else(|| ApiError::not_found(name))?;
    let plugin = crate::config::plugin_of(props, api.cluster.registry())
        .ok_or_else(|| ApiError::internal(format!("connector {name} has an unknown type")))?;
    let kind = match plugin {
        Plugin::Source(_) => Kind::Source,
        Plugin::Sink(_) => {
            let topics = match props.get("topics") {
                Some(Value::String(s)) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            Kind::Sink(topics)
        }
    };
    Ok((kind, state.target(name), state.task_count(name)))
}

pub(crate) async fn get_offsets(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (kind, _, _) = kind(&api, &name)?;
    let offsets: Vec<Value> = match kind {
        Kind::Source => {
            api.cluster.offsets.read_to_end().await?;
            api.cluster
                .offsets
                .all(&name)
                .await?
                .into_iter()
                .map(|(partition, offset)| json!({"partition": partition, "offset": offset}))
                .collect()
        }
        Kind::Sink(topics) => group_offsets::committed(api.cluster.worker_config(), &name, &topics)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|(topic, partition, offset)| {
                json!({
                    "partition": {"kafka_topic": topic, "kafka_partition": partition},
                    "offset": {"kafka_offset": offset},
                })
            })
            .collect(),
    };
    Ok(Json(json!({ "offsets": offsets })))
}

/// Offsets change only on a STOPPED connector whose tasks have all finished: a task still
/// stopping writes its final offsets, which would undo the change. Workers delete a task's
/// state once it has stopped, so this waits (briefly) for those states to go.
async fn require_stopped(
    api: &Api,
    name: &str,
    target: TargetState,
    tasks: u32,
) -> Result<(), ApiError> {
    if target != TargetState::Stopped || tasks > 0 {
        return Err(ApiError::bad_request(format!(
            "Connectors must be in the STOPPED state before their offsets can be modified. This can be done for the specified connector by issuing a 'PUT' request to the '/connectors/{name}/stop' endpoint"
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let active = api
            .cluster
            .status
            .tasks(name)
            .into_iter()
            .any(|(_, s)| matches!(s.state, RunState::Running | RunState::Paused));
        if !active {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(ApiError::conflict(format!(
                "Connector {name} is stopped but some of its tasks have not finished stopping; try again shortly"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn alter_offsets(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, Some(body.clone()));
    let (kind, target, tasks) = kind(&api, &name)?;
    require_stopped(&api, &name, target, tasks).await?;
    let entries = body
        .get("offsets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad_request("The `offsets` field must be a non-empty list"))?;
    match kind {
        Kind::Source => {
            let mut changes = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let partition = entry
                    .get("partition")
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("offsets[{i}].partition: expected an object"))
                    })?;
                let offset = match entry.get("offset") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(o)) => Some(o.clone()),
                    Some(_) => {
                        return Err(ApiError::bad_request(format!(
                            "offsets[{i}].offset: expected an object or null"
                        )));
                    }
                };
                changes.push((partition.clone(), offset));
            }
            api.cluster.offsets.write(&name, &changes).await?;
        }
        Kind::Sink(topics) => {
            let mut commits = Vec::new();
            let mut resets = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                let partition = entry.get("partition").and_then(Value::as_object);
                let topic = partition
                    .and_then(|p| p.get("kafka_topic"))
                    .and_then(Value::as_str);
                let number = partition
                    .and_then(|p| p.get("kafka_partition"))
                    .and_then(Value::as_i64);
                let (Some(topic), Some(number)) = (topic, number) else {
                    return Err(ApiError::bad_request(format!(
                        "offsets[{i}].partition: expected {{\"kafka_topic\": <string>, \"kafka_partition\": <int>}}"
                    )));
                };
                if !topics.iter().any(|t| t == topic) {
                    return Err(ApiError::bad_request(format!(
                        "offsets[{i}].partition.kafka_topic: {topic} is not one of the connector's topics"
                    )));
                }
                match entry.get("offset") {
                    // null resets the partition: its committed offset is deleted.
                    None | Some(Value::Null) => resets.push((topic.to_owned(), number as i32)),
                    Some(Value::Object(o)) => {
                        let Some(offset) = o
                            .get("kafka_offset")
                            .and_then(Value::as_i64)
                            .filter(|o| *o >= 0)
                        else {
                            return Err(ApiError::bad_request(format!(
                                "offsets[{i}].offset.kafka_offset: expected a non-negative integer"
                            )));
                        };
                        commits.push((topic.to_owned(), number as i32, offset));
                    }
                    Some(_) => {
                        return Err(ApiError::bad_request(format!(
                            "offsets[{i}].offset: expected {{\"kafka_offset\": <int>}} or null"
                        )));
                    }
                }
            }
            if !resets.is_empty() {
                crate::cluster::delete_committed_offsets(
                    &api.cluster.worker_config().bootstrap_servers,
                    &crate::cluster::KafkaSecurity::from_settings(
                        &api.cluster.worker_config().kafka,
                    )
                    .map_err(ApiError::internal)?,
                    &format!("connect-{name}"),
                    &resets,
                )
                .await
                .map_err(|e| match e {
                    crate::cluster::ClusterError::Unsupported(m) => {
                        ApiError::new(StatusCode::NOT_IMPLEMENTED, m)
                    }
                    other => ApiError::internal(other),
                })?;
            }
            if commits.is_empty() {
                return Ok(Json(json!({"message": "The offsets for this connector have been altered successfully"})).into_response());
            }
            group_offsets::commit(api.cluster.worker_config(), &name, &commits)
                .await
                .map_err(ApiError::internal)?;
        }
    }
    Ok(
        Json(json!({"message": "The offsets for this connector have been altered successfully"}))
            .into_response(),
    )
}

pub(crate) async fn reset_offsets(
    State(api): State<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
) -> Result<Response, ApiError> {
    on_leader!(api, method, uri, None);
    let (kind, target, tasks) = kind(&api, &name)?;
    require_stopped(&api, &name, target, tasks).await?;
    match kind {
        Kind::Source => {
            api.cluster.offsets.read_to_end().await?;
            let all: Vec<(SourcePartition, Option<SourceOffset>)> = api
                .cluster
                .offsets
                .all(&name)
                .await?
                .into_iter()
                .map(|(partition, _)| (partition, None))
                .collect();
            if !all.is_empty() {
                api.cluster.offsets.write(&name, &all).await?;
            }
        }
        Kind::Sink(_) => group_offsets::delete_group(api.cluster.worker_config(), &name)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?,
    }
    Ok(
        Json(json!({"message": "The offsets for this connector have been reset successfully"}))
            .into_response(),
    )
}
