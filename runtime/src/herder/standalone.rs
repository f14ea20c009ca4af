use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::{ConnectorConfig, Plugin, SinkConnector, SourceConnector};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::status::{State, StatusBoard};
use crate::config::{Pipeline, Problem, WorkerConfig};
use crate::error::{Error, TaskError};
use crate::kafka;
use crate::storage::{FileOffsetStore, OffsetStore};
use crate::task::{SinkTaskRunner, SourceTaskRunner};

/// Runs pipelines in this process, keeping source offsets in the worker's offsets file.
pub struct Standalone {
    worker: WorkerConfig,
    pipelines: Vec<Pipeline>,
    status: StatusBoard,
}

enum Started {
    Source(Box<dyn SourceConnector>),
    Sink(Box<dyn SinkConnector>),
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
            let stopped = match connector {
                Started::Source(c) => c.stop().await,
                Started::Sink(c) => c.stop().await,
            };
            if let Err(e) = stopped {
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
        let connector_error = |source| Error::Connector {
            connector: name.clone(),
            source,
        };
        let key_converter = pipeline
            .settings
            .key_converter
            .as_ref()
            .unwrap_or(&self.worker.key_converter)
            .build();
        let value_converter = pipeline
            .settings
            .value_converter
            .as_ref()
            .unwrap_or(&self.worker.value_converter)
            .build();
        let flush_interval = Duration::from_millis(self.worker.offset_flush_interval);
        let shutdown_timeout = Duration::from_millis(self.worker.shutdown_timeout);
        match &pipeline.plugin {
            Plugin::Source(plugin) => {
                let mut connector = plugin.connector();
                connector
                    .start(&pipeline.config)
                    .await
                    .map_err(connector_error)?;
                let task_configs = connector
                    .task_configs(pipeline.settings.tasks)
                    .map_err(connector_error)?;
                info!(connector = %name, tasks = task_configs.len(), "source connector started");
                for (id, config) in task_configs.into_iter().enumerate() {
                    let id = id as u32;
                    let producer =
                        kafka::source_producer(&self.worker, &format!("sluice-{name}-{id}"))?;
                    let runner = SourceTaskRunner {
                        connector: name.clone(),
                        task_id: id,
                        task: plugin.task(),
                        config,
                        producer,
                        key_converter: key_converter.clone(),
                        value_converter: value_converter.clone(),
                        offsets: store.clone(),
                        flush_interval,
                        max_in_flight: self.worker.max_in_flight_records,
                        shutdown_timeout,
                    };
                    let run = runner.run(cancel.child_token());
                    self.spawn(tasks, &name, id, run);
                }
                Ok(Started::Source(connector))
            }
            Plugin::Sink(plugin) => {
                let mut connector = plugin.connector();
                connector
                    .start(&pipeline.config)
                    .await
                    .map_err(connector_error)?;
                let task_configs = connector
                    .task_configs(pipeline.settings.tasks)
                    .map_err(connector_error)?;
                info!(connector = %name, tasks = task_configs.len(), "sink connector started");
                for (id, config) in task_configs.into_iter().enumerate() {
                    let id = id as u32;
                    let topics = sink_topics(&config).map_err(|m| {
                        Error::Config(vec![Problem {
                            file: String::new(),
                            document: None,
                            field: "config.topics".into(),
                            message: m,
                        }])
                    })?;
                    let (consumer, rebalances) =
                        kafka::sink_consumer(&self.worker, &name, &format!("sluice-{name}-{id}"))?;
                    let runner = SinkTaskRunner {
                        connector: name.clone(),
                        task_id: id,
                        task: plugin.task(),
                        config,
                        topics,
                        consumer: Arc::new(consumer),
                        rebalances,
                        key_converter: key_converter.clone(),
                        value_converter: value_converter.clone(),
                        flush_interval,
                        batch_size: self.worker.sink_batch_size,
                    };
                    let run = runner.run(cancel.child_token());
                    self.spawn(tasks, &name, id, run);
                }
                Ok(Started::Sink(connector))
            }
        }
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

/// The topics a sink task reads: its config's `topics` list.
fn sink_topics(config: &ConnectorConfig) -> Result<Vec<String>, String> {
    let topics: Vec<String> = config
        .get("topics")
        .and_then(|t| t.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if topics.is_empty() {
        return Err("a sink needs a non-empty `topics` list".to_owned());
    }
    Ok(topics)
}
