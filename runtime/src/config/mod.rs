//! Configuration files: the worker file and pipeline files, config providers, and validation that
//! reports every problem with its file and field.

mod connect;
mod file;
mod local_path;
mod pipeline;
mod provider;
mod worker;

pub(crate) use connect::plugin_of;
pub use connect::{
    flat_from_pipeline, flat_from_pipeline_settings, flat_from_settings, mask_flat,
    pipeline_from_flat,
};
pub use file::{ConfigFile, FileKind, Problem, load_yaml};
pub use local_path::{PathPolicy, check_local_paths};
pub use pipeline::{PipelineConfig, pipeline_spec};
pub use provider::{
    EnvPolicy, FilePolicy, ProviderPolicy, resolve_providers, resolve_providers_with,
};
pub(crate) use provider::{resolve_recording, restore_references};
pub use worker::{
    AuthSettings, ClusterSettings, RestSettings, RestartSettings, TlsSettings, WorkerConfig,
    auth_spec, cluster_spec, converter_spec, env_provider_spec, file_provider_spec, providers_spec,
    rest_spec, restart_spec, tls_spec, worker_spec,
};

pub use pipeline::Pipeline;

use std::path::Path;

use sluice_connector_api::Registry;

use crate::error::Error;

/// Loads and validates a worker file.
pub fn load_worker(path: &Path) -> Result<WorkerConfig, Error> {
    let files = file::load_kind(path, FileKind::Worker).map_err(Error::Config)?;
    files
        .first()
        .ok_or_else(|| Error::Config(vec![Problem::whole(path, "the file is empty")]))?
        .worker()
        .map_err(Error::Config)
}

/// Loads and validates a pipeline file (one connector per YAML document) against the connector
/// types in `registry`. Every problem in every document is reported.
pub fn load_pipelines(path: &Path, registry: &Registry) -> Result<Vec<Pipeline>, Error> {
    let files = file::load_kind(path, FileKind::Pipeline).map_err(Error::Config)?;
    let mut pipelines = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match file.pipeline(registry) {
            Ok(p) => pipelines.push(p),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(pipelines)
    } else {
        Err(Error::Config(problems))
    }
}
