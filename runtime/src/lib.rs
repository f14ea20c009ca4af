//! Sluice, a connector runtime for Kafka: source connectors copy from external systems into
//! topics, sink connectors from topics out; tasks do the copying with at-least-once delivery,
//! offsets committed only after the data they cover is durable downstream.
//!
//! The entry points: [`config`] reads worker and pipeline files, [`registry::builtin`] lists the
//! connector types, and [`run_standalone`] runs pipelines in this process (tests use it too).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice::Error> {
//! let registry = sluice::registry::builtin();
//! let worker = sluice::config::load_worker("configs/worker.yaml".as_ref())?;
//! let pipelines = sluice::config::load_pipelines("configs/pipelines/quickstart.yaml".as_ref(), &registry)?;
//! sluice::run_standalone(worker, pipelines, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```

pub mod cluster;
pub mod config;
pub mod convert;
mod error;
pub mod herder;
mod kafka;
pub mod logging;
pub mod metrics;
pub mod reference;
pub mod registry;
pub mod rest;
pub mod storage;
pub mod task;
pub mod transform;

pub use error::{Error, TaskError};
pub use kafka::SecurityFailure;

use tokio_util::sync::CancellationToken;

/// Runs a distributed worker (with its REST API when enabled) until `cancel` fires.
pub async fn run_worker(
    worker: config::WorkerConfig,
    registry: sluice_connector_api::Registry,
    cancel: CancellationToken,
) -> Result<(), Error> {
    run(worker, registry, herder::Mode::Distributed, cancel).await
}

/// Runs pipelines in standalone mode until `cancel` fires, a pipeline's connector cannot start,
/// or every task has failed. The REST API (when enabled) manages connectors in memory.
pub async fn run_standalone(
    worker: config::WorkerConfig,
    pipelines: Vec<config::Pipeline>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let registry = registry::with_plugins(worker.plugins_dir.as_deref());
    run_standalone_with(worker, registry, pipelines, cancel).await
}

/// [`run_standalone`] with the connector types of `registry`, which must hold the types the
/// pipelines were loaded with (an embedding program or a test may add its own).
pub async fn run_standalone_with(
    worker: config::WorkerConfig,
    registry: sluice_connector_api::Registry,
    pipelines: Vec<config::Pipeline>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::new();
    let duplicates: Vec<config::Problem> = pipelines
        .iter()
        .filter(|p| !seen.insert(p.settings.name.clone()))
        .map(|p| config::Problem {
            file: String::new(),
            document: None,
            field: "name".to_owned(),
            message: format!(
                "connector name `{}` is used by more than one pipeline",
                p.settings.name
            ),
        })
        .collect();
    if !duplicates.is_empty() {
        return Err(Error::Config(duplicates));
    }
    run(
        worker,
        registry,
        herder::Mode::Standalone { pipelines },
        cancel,
    )
    .await
}

async fn run(
    worker: config::WorkerConfig,
    registry: sluice_connector_api::Registry,
    mode: herder::Mode,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let rest = worker.rest.clone();
    let rest_error = |source| Error::Rest {
        listen: rest.listen.clone(),
        source,
    };
    let security = if rest.enabled {
        let distributed = matches!(mode, herder::Mode::Distributed);
        Some(rest::Security::load(&rest, distributed)?)
    } else {
        None
    };
    // Without a REST API a worker still hands task configs to the leader.
    let peers = match &security {
        Some(security) => security.peers.clone(),
        None => rest::Peers::new(&rest).map_err(rest::SecurityError::from)?,
    };
    if matches!(mode, herder::Mode::Distributed) {
        kafka::preflight::check_membership(&worker)?;
    }
    kafka::preflight::check(&worker).await?;
    // Bound first, so a port of 0 gets its real number into the worker's URL (its id).
    let listener = if rest.enabled {
        Some(
            tokio::net::TcpListener::bind(&rest.listen)
                .await
                .map_err(rest_error)?,
        )
    } else {
        None
    };
    let url = match &listener {
        Some(l) => rest.url_for(l.local_addr().map_err(rest_error)?),
        None => rest.url(),
    };
    if let Some(security) = &security {
        security.bind(&url);
    }
    let rest_cancel = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let herder = herder::run_herder(
        worker,
        registry,
        url,
        peers,
        mode,
        cancel.clone(),
        move |cluster| {
            let _ = ready_tx.send(cluster);
        },
    );
    let serve = async {
        let (Ok(cluster), Some(listener), Some(security)) = (ready_rx.await, listener, security)
        else {
            return Ok(());
        };
        rest::serve(listener, cluster, security, rest_cancel.clone()).await
    };
    let (herder, served) = tokio::join!(
        async {
            let result = herder.await;
            rest_cancel.cancel();
            result
        },
        serve
    );
    served.map_err(rest_error)?;
    herder
}
