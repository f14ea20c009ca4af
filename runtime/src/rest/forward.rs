//! Only the leader writes the config topic: a follower forwards write requests to it, marking
//! them `forward=false` so a request never bounces between workers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{Api, ApiError};

/// Handles a write here when this worker leads, else returns the leader's answer from the
/// enclosing handler.
macro_rules! on_leader {
    ($api:expr, $method:expr, $uri:expr, $body:expr) => {
        if let $crate::rest::forward::Route::Leader(leader) =
            $crate::rest::forward::route(&$api, &$uri)?
        {
            return $crate::rest::forward::forward(&$api, &leader, $method, &$uri, $body).await;
        }
    };
}
pub(crate) use on_leader;

/// Where a write is handled.
pub(crate) enum Route {
    Here,
    Leader(String),
}

/// Decides whether this worker handles a write or forwards it.
pub(crate) fn route(api: &Api, uri: &Uri) -> Result<Route, ApiError> {
    let membership = api.cluster.membership();
    if membership.is_leader {
        return Ok(Route::Here);
    }
    let forwarded = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "forward=false"));
    match membership.leader_url {
        Some(_) if forwarded => Err(ApiError::conflict(
            "Cannot complete request because of a conflicting operation (e.g. worker rebalance): this worker is not the leader",
        )),
        Some(leader) => Ok(Route::Leader(leader)),
        None => Err(ApiError::conflict(
            "Cannot complete request momentarily due to no known leader URL, likely because a rebalance is underway.",
        )),
    }
}

/// Sends the request to the leader and relays its answer.
pub(crate) async fn forward(
    api: &Api,
    leader: &str,
    method: Method,
    uri: &Uri,
    body: Option<serde_json::Value>,
) -> Result<Response, ApiError> {
    let query = match uri.query() {
        Some(q) if !q.is_empty() => format!("?{q}&forward=false"),
        _ => "?forward=false".to_owned(),
    };
    let method =
        reqwest::Method::from_bytes(method.as_str().as_bytes()).map_err(ApiError::internal)?;
    let body = match body {
        Some(body) => serde_json::to_vec(&body).map_err(ApiError::internal)?,
        None => Vec::new(),
    };
    let request = api
        .cluster
        .peers
        .request(method, leader, &format!("{}{query}", uri.path()), body)
        .timeout(Duration::from_secs(90));
    let response = request.send().await.map_err(|e| {
        ApiError::internal(format!(
            "cannot forward the request to the leader at {leader}: {e}"
        ))
    })?;
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let bytes = response.bytes().await.map_err(ApiError::internal)?;
    // Read-your-writes: once the leader has applied a change, this worker reads the config
    // topic up to it before answering, so the client's next request here sees it.
    if status.is_success()
        && let Ok(Err(e)) =
            tokio::time::timeout(Duration::from_secs(5), api.cluster.configs.read_to_end()).await
    {
        tracing::warn!(error = %e, "cannot read the config topic after a forwarded write");
    }
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        Body::from(bytes),
    )
        .into_response())
}
