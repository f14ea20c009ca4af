//! Building connector instances and task loops from a validated pipeline; shared by both modes.

use std::sync::Arc;
use std::time::Duration;

use sluice_connector_api::{ConnectorConfig, Plugin, SinkConnector, SourceConnector};
use tokio_util::sync::CancellationToken;

use crate::config::{Pipeline, WorkerConfig};
use crate::error::TaskError;
use crate::kafka;
use crate::metrics::TaskMetrics;
use crate::storage::OffsetStore;
use crate::task::{
    AckWindow, ErrorHandler, RETRY_START, SinkTaskRunner, SourceTaskRunner, TopicReport,
    TopicTracker,
};

/// A started connector instance.
pub(crate) enum Started {
    Source(Box<dyn SourceConnector>),
    Sink(Box<dyn SinkConnector>),
}

impl Started {
    pub(crate) async fn stop(&mut self) -> sluice_connector_api::Result<()> {
        match self {
            Started::Source(c) => c.stop().await,
            Started::Sink(c) => c.stop().await,
        }
    }
}

/// Starts a pipeline's connector instance and asks it for task configs.
pub(crate) async fn start_connector(
    pipeline: &Pipeline,
) -> sluice_connector_api::Result<(Started, Vec<ConnectorConfig>)> {
    match &pipeline.plugin {
        Plugin::Source(plugin) => {
            let mut connector = plugin.connector();
            connector.start(&pipeline.config).await?;
            let tasks = connector.task_configs(pipeline.settings.tasks)?;
            Ok((Started::Source(connector), tasks))
        }
        Plugin::Sink(plugin) => {
            let mut connector = plugin.connector();
            connector.start(&pipeline.config).await?;
            let tasks = connector.task_configs(pipeline.settings.tasks)?;
            Ok((Started::Sink(connector), tasks))
        }
    }
}

/// What the worker learns from a running task.
pub(crate) struct TaskHooks {
    /// Called with each topic the task uses for the first time.
    pub topics: Option<TopicReport>,
    /// The task's counters.
    pub metrics: Arc<TaskMetrics>,
}

/// The loop of one task, ready to run until the token is cancelled.
pub(crate) type TaskRun =
    std::pin::Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send + 'static>>;

/// The working directory of task `id` of connector `name`: `<data_dir>/tasks/<name>-<id>`, the name
/// percent-encoded where it is not a plain file name character (names are free text).
fn task_work_dir(worker: &WorkerConfig, name: &str, id: u32) -> std::path::PathBuf {
    let mut dir = String::with_capacity(name.len() + 8);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') {
            dir.push(char::from(b));
        } else {
            dir.push_str(&format!("%{b:02X}"));
        }
    }
    worker.data_dir.join("tasks").join(format!("{dir}-{id}"))
}

/// Builds a task loop for task `id` of `pipeline` with its task `config`.
pub(crate) fn task_run(
    worker: &WorkerConfig,
    pipeline: &Pipeline,
    id: u32,
    config: ConnectorConfig,
    offsets: &Arc<dyn OffsetStore>,
    hooks: TaskHooks,
    cancel: CancellationToken,
) -> Result<TaskRun, TaskError> {
    let TaskHooks { topics, metrics } = hooks;
    let name = pipeline.settings.name.clone();
    let key_converter = pipeline
        .settings
        .key_converter
        .as_ref()
        .unwrap_or(&worker.key_converter)
        .build();
    let value_converter = pipeline
        .settings
        .value_converter
        .as_ref()
        .unwrap_or(&worker.value_converter)
        .build();
    let flush_interval = Duration::from_millis(worker.offset_flush_interval);
    let shutdown_timeout = Duration::from_millis(worker.shutdown_timeout);
    match &pipeline.plugin {
        Plugin::Source(plugin) => {
            let acks = Arc::new(AckWindow::default());
            let producer =
                kafka::source_producer(worker, &format!("sluice-{name}-{id}"), acks.clone())?;
            let errors = error_handler(worker, pipeline, id, metrics.clone())?;
            let runner = SourceTaskRunner {
                task_id: id,
                task: plugin.task(),
                config,
                producer,
                acks,
                key_converter,
                value_converter,
                offsets: offsets.clone(),
                flush_interval,
                max_in_flight: worker.max_in_flight_records,
                shutdown_timeout,
                topics: TopicTracker::new(topics),
                errors,
                transforms: pipeline.transforms.clone(),
                metrics,
                work_dir: task_work_dir(worker, &name, id),
                connector: name,
            };
            Ok(Box::pin(runner.run(cancel)))
        }
        Plugin::Sink(plugin) => {
            let subscribed = sink_topics(&config).map_err(TaskError::Config)?;
            if let Some(report) = &topics {
                subscribed.iter().for_each(|t| report(t));
            }
            let topics = subscribed;
            let (consumer, rebalances) = kafka::sink_consumer(
                worker,
                &name,
                &format!("sluice-{name}-{id}"),
                metrics.sink_lag.clone(),
            )?;
            let errors = Arc::new(error_handler(worker, pipeline, id, metrics.clone())?);
            let runner = SinkTaskRunner {
                connector: name,
                task_id: id,
                task: plugin.task(),
                config,
                topics,
                consumer: Arc::new(consumer),
                rebalances,
                key_converter,
                value_converter,
                flush_interval,
                batch_size: worker.sink_batch_size,
                errors,
                retry_delay: RETRY_START,
                transforms: pipeline.transforms.clone(),
                metrics,
                commits: Default::default(),
                rewinds: Default::default(),
            };
            Ok(Box::pin(runner.run(cancel)))
        }
    }
}

/// The pipeline's error policy for task `id`, with a dead-letter producer when it names a topic.
fn error_handler(
    worker: &WorkerConfig,
    pipeline: &Pipeline,
    id: u32,
    metrics: Arc<TaskMetrics>,
) -> Result<ErrorHandler, TaskError> {
    let name = &pipeline.settings.name;
    let policy = pipeline.settings.errors.clone();
    let dlq = match &policy.dlq_topic {
        Some(_) => Some(kafka::dlq_producer(
            worker,
            &format!("sluice-{name}-{id}-dlq"),
        )?),
        None => None,
    };
    Ok(ErrorHandler {
        policy,
        connector: name.clone(),
        task_id: id,
        dlq,
        metrics,
    })
}

/// The topics a sink task reads: its config's `topics` list.
pub(crate) fn sink_topics(config: &ConnectorConfig) -> Result<Vec<String>, String> {
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
