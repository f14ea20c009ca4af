//! The REST API, with Kafka Connect's paths, verbs, status codes and JSON shapes so existing
//! Connect clients and UIs work unchanged. Writes go to the leader: a follower forwards them.

mod admin;
mod auth;
mod connectors;
mod error;
pub(crate) mod forward;
mod host;
mod offsets;
mod peer;
mod plugins;
mod security;
mod signature;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::herder::Cluster;

pub use auth::AuthError;
#[doc(hidden)]
pub use auth::fuzz_untrusted_auth;
pub use error::ApiError;
pub use peer::Peers;
pub use security::{Security, SecurityError};
pub use tls::TlsError;

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct Api {
    pub cluster: Arc<Cluster>,
    pub kafka_cluster_id: Arc<str>,
}

pub fn router(cluster: Arc<Cluster>, kafka_cluster_id: String, security: &Security) -> Router {
    let api = Api {
        cluster,
        kafka_cluster_id: kafka_cluster_id.into(),
    };
    Router::new()
        .route("/", get(connectors::root))
        .route("/health", get(admin::health))
        .route("/health/live", get(admin::live))
        .route("/metrics", get(admin::metrics))
        .route("/admin/loggers", get(admin::loggers))
        .route(
            "/admin/loggers/{logger}",
            get(admin::logger).put(admin::set_logger),
        )
        .route(
            "/connectors",
            get(connectors::list).post(connectors::create),
        )
        .route(
            "/connectors/{name}",
            get(connectors::info).delete(connectors::delete),
        )
        .route(
            "/connectors/{name}/config",
            get(connectors::config).put(connectors::put_config),
        )
        .route("/connectors/{name}/status", get(connectors::status))
        .route("/connectors/{name}/restart", post(connectors::restart))
        .route("/connectors/{name}/pause", put(connectors::pause))
        .route("/connectors/{name}/resume", put(connectors::resume))
        .route("/connectors/{name}/stop", put(connectors::stop))
        .route(
            "/connectors/{name}/tasks",
            get(connectors::tasks).post(connectors::put_tasks),
        )
        .route(
            "/connectors/{name}/tasks/{task}/status",
            get(connectors::task_status),
        )
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(connectors::restart_task),
        )
        .route("/connectors/{name}/topics", get(connectors::topics))
        .route(
            "/connectors/{name}/topics/reset",
            put(connectors::reset_topics),
        )
        .route(
            "/connectors/{name}/offsets",
            get(offsets::get_offsets)
                .patch(offsets::alter_offsets)
                .delete(offsets::reset_offsets),
        )
        .route("/connector-plugins", get(plugins::list))
        .route(
            "/connector-plugins/{kind}/config",
            get(plugins::config_definition),
        )
        .route(
            "/connector-plugins/{kind}/config/validate",
            put(plugins::validate),
        )
        .fallback(error::not_found)
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&security.auth),
            auth::check,
        ))
        .layer(DefaultBodyLimit::max(security.max_body_bytes))
        // Outermost: a request naming a foreign host is refused before anything else.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&security.hosts),
            host::check,
        ))
}

/// Serves the API on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    security: Security,
    cancel: CancellationToken,
) -> Result<(), std::io::Error> {
    let addr: SocketAddr = listener.local_addr()?;
    let cluster_id = crate::kafka::group_offsets::cluster_id(cluster.worker_config())
        .await
        .unwrap_or_default();
    info!(%addr, url = %cluster.url, "REST API listening");
    let app = router(cluster, cluster_id, &security);
    let stop = cancel.clone();
    let shutdown = async move { stop.cancelled().await };
    match &security.tls {
        Some(config) => {
            let listener = tls::TlsListener::new(listener, Arc::clone(config), cancel.clone())?;
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
