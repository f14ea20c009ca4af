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
pub mod reference;
pub mod registry;
pub mod rest;
pub mod storage;
mod task;

pub use error::{Error, TaskError};

use tokio_util::sync::CancellationToken;

/// Runs a distributed worker (with its REST API when enabled) until `cancel` fires.
pub async fn run_worker(
    worker: config::WorkerConfig,
    registry: sluice_connector_api::Registry,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let rest = worker.rest.clone();
    let rest_cancel = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let herder = herder::run_distributed(worker, registry, cancel.clone(), move |cluster| {
        let _ = ready_tx.send(cluster);
    });
    let serve = async {
        let Ok(cluster) = ready_rx.await else {
            return Ok(());
        };
        if !rest.enabled {
            return Ok(());
        }
        rest::serve(&rest.listen, cluster, rest_cancel.clone()).await
    };
    let (herder, served) = tokio::join!(
        async {
            let result = herder.await;
            rest_cancel.cancel();
            result
        },
        serve
    );
    served.map_err(|source| Error::Rest {
        listen: rest.listen.clone(),
        source,
    })?;
    herder
}

/// Runs pipelines in standalone mode until `cancel` fires or every task has failed.
pub async fn run_standalone(
    worker: config::WorkerConfig,
    pipelines: Vec<config::Pipeline>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    herder::Standalone::new(worker, pipelines)?
        .run(cancel)
        .await
}
