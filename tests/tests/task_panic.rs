//! A task whose code panics is reported FAILED with the panic's message and restarted by the
//! `task_restart` policy; standalone mode stops with an error once nothing is left running.
//! The panicking connector exists only in this test: the worker runs in this process, with a
//! registry holding the built-in types and this one.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, FieldKind, Registry, Result, SourceConnector, SourcePlugin,
    SourceRecord, SourceTask, SourceTaskContext,
};
use sluice_tests::cluster::{call, wait_async};
use sluice_tests::{free_port, kafka, unique, write_worker};
use tokio_util::sync::CancellationToken;

const PANIC_MESSAGE: &str = "deliberate panic in poll (test connector)";
const CONNECTOR_PANIC_MESSAGE: &str = "deliberate panic in start (test connector)";
const BUILD_PANIC_MESSAGE: &str = "deliberate panic in task() (test connector)";

/// `panicking-source`, or with `in_task` `unbuildable-source`, whose plugin panics when asked
/// for a task (before the task exists: while the worker builds it).
struct PanickingSource {
    in_task: bool,
}

impl SourcePlugin for PanickingSource {
    fn name(&self) -> &str {
        if self.in_task {
            "unbuildable-source"
        } else {
            "panicking-source"
        }
    }
    fn doc(&self) -> &str {
        "Test only: a source whose task panics in its first poll."
    }
    fn spec(&self) -> ConfigSpec {
        ConfigSpec::new()
            .required("topic", FieldKind::String, "Never written to.")
            .optional(
                "panic_in",
                FieldKind::String,
                "poll",
                "Where to panic: the task's `poll` or the connector's `start`.",
            )
    }
    fn connector(&self) -> Box<dyn SourceConnector> {
        Box::new(PanickingConnector(ConnectorConfig::default()))
    }
    fn task(&self) -> Box<dyn SourceTask> {
        if self.in_task {
            panic!("{BUILD_PANIC_MESSAGE}");
        }
        Box::new(PanickingTask)
    }
}

struct PanickingConnector(ConnectorConfig);

#[async_trait]
impl SourceConnector for PanickingConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        if config.get_str("panic_in") == Some("start") {
            panic!("{CONNECTOR_PANIC_MESSAGE}");
        }
        self.0 = config.clone();
        Ok(())
    }

    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok(vec![self.0.clone()])
    }
}

struct PanickingTask;

#[async_trait]
impl SourceTask for PanickingTask {
    async fn start(&mut self, _ctx: SourceTaskContext, _config: &ConnectorConfig) -> Result<()> {
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        panic!("{PANIC_MESSAGE}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_task_is_failed_with_its_message_and_restarted_by_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bad, good) = (unique("panicking"), unique("healthy"));
    kafka::create_topic(&good, 1).await;
    let port = free_port();
    let worker = write_worker(
        dir.path(),
        &format!(
            "rest:\n  listen: 127.0.0.1:{port}\ntask_restart:\n  initial_backoff: 100ms\n  max_backoff: 200ms\n  max_restarts: 2\n"
        ),
    );
    let pipeline = dir.path().join("pipelines.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {bad}\nconnector: panicking-source\nconfig: {{topic: {bad}}}\n---\n\
             name: {good}\nconnector: datagen\nconfig: {{topic: {good}, rate: 10}}\n"
        ),
    )
    .expect("write pipelines");
    let mut registry: Registry = sluice::registry::builtin();
    registry.add_source(PanickingSource { in_task: false });
    registry.add_source(PanickingSource { in_task: true });
    let pipelines = sluice::config::load_pipelines(&pipeline, &registry).expect("pipelines");
    let worker = sluice::config::load_worker(&worker).expect("worker file");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(sluice::run_standalone_with(
        worker,
        registry,
        pipelines,
        cancel.clone(),
    ));
    let _stop = cancel.drop_guard();

    // Restarted twice (the policy's limit), then left FAILED with the panic's message.
    let url = format!("http://127.0.0.1:{port}");
    let status_url = format!("{url}/connectors/{bad}/status");
    let task = wait_async(
        "the panicking task to give up after its restarts",
        Duration::from_secs(120),
        || async {
            // The worker may not serve its REST API yet: a refused connection is another round.
            let status: Value = reqwest::get(&status_url).await.ok()?.json().await.ok()?;
            let task = status["tasks"].get(0)?.clone();
            let trace = task["trace"].as_str().unwrap_or_default();
            (task["state"] == "FAILED" && trace.contains("gave up")).then_some(task)
        },
    )
    .await;
    let trace = task["trace"].as_str().unwrap_or_default();
    assert!(
        trace.contains(&format!("the task panicked: {PANIC_MESSAGE}")),
        "{task}"
    );
    assert_eq!(task["restarts"], Value::from(2), "{task}");
    assert!(!running.is_finished(), "the healthy connector still runs");

    // A connector whose own start panics is FAILED with the message too.
    let starts = unique("panicking-start");
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": starts, "config": {
            "connector.class": "panicking-source", "topic": starts, "panic_in": "start",
        }})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let connector = wait_async(
        "the connector whose start panics to fail",
        Duration::from_secs(60),
        || async {
            let (_, status) = call(
                Method::GET,
                &format!("{url}/connectors/{starts}/status"),
                None,
            )
            .await;
            (status["connector"]["state"] == "FAILED").then(|| status["connector"].clone())
        },
    )
    .await;
    assert!(
        connector["trace"]
            .as_str()
            .is_some_and(|t| t.contains(&format!(
                "the connector panicked: {CONNECTOR_PANIC_MESSAGE}"
            ))),
        "{connector}"
    );

    // A plugin that panics while the worker builds the task fails that task with the message;
    // the worker keeps serving and running the rest.
    let unbuildable = unique("unbuildable");
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": unbuildable, "config": {
            "connector.class": "unbuildable-source", "topic": unbuildable,
        }})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let task = wait_async(
        "the task that cannot be built to fail",
        Duration::from_secs(60),
        || async {
            let (_, status) = call(
                Method::GET,
                &format!("{url}/connectors/{unbuildable}/status"),
                None,
            )
            .await;
            let task = status["tasks"].get(0)?.clone();
            (task["state"] == "FAILED").then_some(task)
        },
    )
    .await;
    assert!(
        task["trace"].as_str().is_some_and(|t| t.contains(&format!(
            "the task panicked while it was built: {BUILD_PANIC_MESSAGE}"
        ))),
        "{task}"
    );
    let (code, status) = call(
        Method::GET,
        &format!("{url}/connectors/{good}/status"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert!(!running.is_finished(), "the worker still runs");

    // With the healthy connector gone nothing runs: standalone stops with an error (the
    // `sluice run` command exits non-zero with it).
    let (code, body) = call(Method::DELETE, &format!("{url}/connectors/{good}"), None).await;
    assert_eq!(code, 204, "{body}");
    let outcome = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("standalone to stop once nothing runs")
        .expect("the worker's task");
    assert!(
        matches!(outcome, Err(sluice::Error::AllTasksFailed)),
        "{outcome:?}"
    );
}
