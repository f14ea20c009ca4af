//! Configuration files: the worker file and pipeline files, config providers, and validation that
//! reports every problem with its file and field.

mod file;
mod pipeline;
mod provider;
mod worker;

pub use file::{ConfigFile, FileKind, Problem, load_yaml};
pub use pipeline::{PipelineConfig, pipeline_spec};
pub use provider::resolve_providers;
pub use worker::{WorkerConfig, converter_spec, worker_spec};

pub use pipeline::Pipeline;

use std::path::Path;

use sluice_connector_api::Registry;

use crate::error::Error;

/// Loads and validates a worker file.
pub fn load_worker(path: &Path) -> Result<WorkerConfig, Error> {
    file::load_kind(path, FileKind::Worker).and_then(|f| f.worker()).map_err(Error::Config)
}

/// Loads and validates a pipeline file against the connector types in `registry`.
pub fn load_pipeline(path: &Path, registry: &Registry) -> Result<Pipeline, Error> {
    file::load_kind(path, FileKind::Pipeline).and_then(|f| f.pipeline(registry)).map_err(Error::Config)
}
