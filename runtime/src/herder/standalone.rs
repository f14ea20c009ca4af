use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::launch::{Started, start_connector, task_run};
use super::status::{State, StatusBoard};
use crate::config::{Pipeline, Problem, WorkerConfig};
use crate::error::{Error, TaskError};
use crate::storage::{FileOffsetStore, OffsetStore};

/// Runs pipelines in this process, keeping source offsets in the worker's offsets file.
pub struct Standalone {
    worker: WorkerConfig,
    pipelines: Vec<Pipeline>,
    status: StatusBoard,
}

impl Standalone {
    pub fn new(worker: WorkerConfig, pipelines: Vec<Pipeline>) -> Result<Self, Error> {
        let mut seen = HashSet::new();
        let duplicates: Vec<Problem> = pipelines
            .iter()
            .filter(|p| !seen.insert(p.settings.name.clone()))
            .map(|p| Problem {
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
        Ok(Self {
            worker,
            pipelines,
            status: StatusBoard::default(),
        })
    }

    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// Runs until `cancel` fires (then stops cleanly within the shutdown timeout) or every task
    /// has failed.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let store: Arc<dyn OffsetStore> =
            Arc::new(FileOffsetStore::open(&self.worker.offsets_file).await?);
        let mut tasks = JoinSet::new();
        let mut connectors = Vec::new();
        for pipeline in &self.pipelines {
            let started = self
                .start_connector(pipeline, &store, &cancel, &mut tasks)
                .await?;
            connectors.push((pipeline.settings.name.clone(), started));
        }
        let total = tasks.len();
        let mut failed = 0;
        let mut stopping = false;
        let shutdown = Duration::from_millis(self.worker.shutdown_timeout);
        loop {
            tokio::select! {
                _ = cancel.cancelled(), if !stopping => {
                    info!("stopping: flushing and committing");
                    stopping = true;
                }
                _ = tokio::time::sleep(shutdown), if stopping => {
                    warn!(remaining = tasks.len(), "shutdown timeout reached; abandoning tasks (uncommitted records are delivered again after restart)");
                    tasks.abort_all();
                    break;
                }
                joined = tasks.join_next() => match joined {
                    Some(Ok(ok)) => failed += usize::from(!ok),
                    Some(Err(e)) => {
                        error!(error = %e, "task panicked");
                        failed += 1;
                    }
                    None => break,
                },
            }
        }
        for (name, connector) in &mut connectors {
            if let Err(e) = connector.stop().await {
                warn!(connector = %name, error = %e, "connector stop failed");
            }
        }
        if total > 0 && failed == total && !cancel.is_cancelled() {
            return Err(Error::AllTasksFailed);
        }
        Ok(())
    }

    async fn start_connector(
        &self,
        pipeline: &Pipeline,
        store: &Arc<dyn OffsetStore>,
        cancel: &CancellationToken,
        tasks: &mut JoinSet<bool>,
    ) -> Result<Started, Error> {
        let name = pipeline.settings.name.clone();
        let (connector, task_configs) =
            start_connector(pipeline)
                .await
                .map_err(|source| Error::Connector {
                    connector: name.clone(),
                    source,
                })?;
        info!(connector = %name, tasks = task_configs.len(), "connector started");
        for (id, config) in task_configs.into_iter().enumerate() {
            let id = id as u32;
            let run = task_run(&self.worker, pipeline, id, config, store, None, cancel.child_token())
                .map_err(|e| {
                    Error::Config(vec![Problem {
                        file: String::new(),
                        document: None,
                        field: "config".into(),
                        message: format!("connector {name} task {id}: {e}"),
                    }])
                })?;
            self.spawn(tasks, &name, id, run);
        }
        Ok(connector)
    }

    /// Runs a task loop, recording its state; the join value says whether it ended cleanly.
    fn spawn(
        &self,
        tasks: &mut JoinSet<bool>,
        connector: &str,
        id: u32,
        run: impl Future<Output = Result<(), TaskError>> + Send + 'static,
    ) {
        let status = self.status.clone();
        let connector = connector.to_owned();
        status.set(&connector, id, State::Running, None);
        let span = info_span!("task", connector = %connector, task = id);
        tasks.spawn(
            async move {
                match run.await {
                    Ok(()) => {
                        info!("task stopped");
                        status.set(&connector, id, State::Stopped, None);
                        true
                    }
                    Err(e) => {
                        error!(error = %e, "task failed");
                        status.set(&connector, id, State::Failed, Some(e.to_string()));
                        false
                    }
                }
            }
            .instrument(span),
        );
    }
}
