//! Operations endpoints: health (readiness and liveness), Prometheus metrics, log levels.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::Body;
use super::{Api, ApiError};
use crate::cluster::TaskId;
use crate::metrics::{CONTENT_TYPE, ClusterView};
use crate::storage::RunState;

/// The reconcile loop goes round every few seconds; this long without a round means it hangs.
const LIVENESS_LIMIT: Duration = Duration::from_secs(60);

/// Readiness: the worker has read the config topic (it serves only after that) and joined the
/// group (it knows the leader and its assignment).
pub(crate) async fn health(State(api): State<Api>) -> Response {
    if api.cluster.membership().leader_url.is_some() {
        Json(json!({"status": "healthy", "message": "Worker has completed startup and is ready to handle requests."}))
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "message": "Worker is still joining the cluster."})),
        )
            .into_response()
    }
}

/// Liveness: the process answers and its reconcile loop is not stuck (a worker between
/// rebalances is alive, only not ready).
pub(crate) async fn live(State(api): State<Api>) -> Response {
    let since = api.cluster.since_heartbeat();
    if since <= LIVENESS_LIMIT {
        Json(json!({"status": "alive"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "stuck",
                "message": format!("the worker's reconcile loop has not run for {}s", since.as_secs()),
            })),
        )
            .into_response()
    }
}

pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    let cluster = &api.cluster;
    let state = cluster.configs.snapshot();
    let membership = cluster.membership();
    let mut view = ClusterView {
        connectors: membership.assigned.connectors.len(),
        tasks: membership.assigned.tasks.len(),
        is_leader: membership.is_leader,
        ..ClusterView::default()
    };
    for name in state.connectors.keys() {
        let connector = cluster
            .status
            .connector(name)
            .map_or(RunState::Unassigned, |s| s.state);
        view.connector_states
            .push((name.clone(), state_name(connector)));
        for (task, status) in cluster.status.tasks(name) {
            view.task_states
                .push((TaskId::new(name.as_str(), task), state_name(status.state)));
        }
    }
    (
        [(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)],
        cluster.metrics.encode(&view),
    )
        .into_response()
}

fn state_name(state: RunState) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn log_levels() -> Result<&'static crate::logging::LogLevels, ApiError> {
    crate::logging::levels().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "log levels cannot be changed: this process set up its own logging",
        )
    })
}

/// `GET /admin/loggers`: every logger with a level of its own, and `root`.
pub(crate) async fn loggers() -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(log_levels()?.list())))
}

/// `GET /admin/loggers/{logger}`: the level in force for a logger.
pub(crate) async fn logger(Path(logger): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(log_levels()?.get(&logger))))
}

#[derive(Deserialize)]
pub(crate) struct SetLevel {
    level: String,
}

/// `PUT /admin/loggers/{logger}` with `{"level": "DEBUG"}`: sets the level on this worker for
/// the logger and every logger below it; answers with the loggers changed.
pub(crate) async fn set_logger(
    Path(logger): Path<String>,
    Body(body): Body<SetLevel>,
) -> Result<Json<Value>, ApiError> {
    let changed = log_levels()?
        .set(&logger, &body.level)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    tracing::info!(%logger, level = %body.level, "log level changed");
    Ok(Json(json!(changed)))
}
