//! Prometheus metrics of a worker (`GET /metrics`): what Kafka Connect exposes over JMX, under
//! Prometheus-style names, labelled with `connector`, `task` and `worker`.
//!
//! Task loops count into a [`TaskMetrics`] (plain atomics behind the `prometheus-client`
//! families, so counting costs one atomic add); gauges that describe the cluster (states,
//! assignment) are filled in when scraped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cluster::TaskId;

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    connector: String,
    task: String,
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorStateLabels {
    connector: String,
    state: String,
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskStateLabels {
    connector: String,
    task: String,
    state: String,
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabels {
    connector: String,
    task: String,
    worker: String,
    result: &'static str,
}

type Seconds = Family<TaskLabels, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric family of a worker.
struct Families {
    connectors: Family<WorkerLabels, Gauge>,
    tasks: Family<WorkerLabels, Gauge>,
    connector_startup_attempts: Family<WorkerLabels, Counter>,
    connector_startup_failures: Family<WorkerLabels, Counter>,
    task_startup_attempts: Family<WorkerLabels, Counter>,
    task_startup_failures: Family<WorkerLabels, Counter>,
    rebalance_epoch: Family<WorkerLabels, Gauge>,
    rebalancing: Family<WorkerLabels, Gauge>,
    rebalances_completed: Family<WorkerLabels, Counter>,
    rebalance_seconds: Family<WorkerLabels, Histogram, fn() -> Histogram>,
    since_rebalance: Family<WorkerLabels, Gauge<f64, AtomicU64>>,
    leader: Family<WorkerLabels, Gauge>,
    connector_state: Family<ConnectorStateLabels, Gauge>,
    task_state: Family<TaskStateLabels, Gauge>,
    // Per task.
    source_polled: Family<TaskLabels, Counter>,
    source_written: Family<TaskLabels, Counter>,
    source_poll_seconds: Seconds,
    source_active: Family<TaskLabels, Gauge>,
    sink_read: Family<TaskLabels, Counter>,
    sink_sent: Family<TaskLabels, Counter>,
    sink_put_seconds: Seconds,
    sink_partitions: Family<TaskLabels, Gauge>,
    sink_lag: Family<TaskLabels, Gauge>,
    commits: Family<CommitLabels, Counter>,
    commit_seconds: Seconds,
    record_errors: Family<TaskLabels, Counter>,
    record_failures: Family<TaskLabels, Counter>,
    records_skipped: Family<TaskLabels, Counter>,
    retries: Family<TaskLabels, Counter>,
    dlq_requests: Family<TaskLabels, Counter>,
    dlq_failures: Family<TaskLabels, Counter>,
    restarts: Family<TaskLabels, Counter>,
}

/// A worker's metrics: the registry, and the counters of each task it runs (or ran).
pub struct Metrics {
    worker: String,
    registry: Registry,
    families: Families,
    tasks: Mutex<BTreeMap<TaskId, Arc<TaskMetrics>>>,
    /// When the running rebalance began (None when none runs).
    rebalance_began: Mutex<Option<Instant>>,
    last_rebalance: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of the worker with id `worker`.
    pub fn new(worker: &str) -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let families = Families {
            connectors: Family::default(),
            tasks: Family::default(),
            connector_startup_attempts: Family::default(),
            connector_startup_failures: Family::default(),
            task_startup_attempts: Family::default(),
            task_startup_failures: Family::default(),
            rebalance_epoch: Family::default(),
            rebalancing: Family::default(),
            rebalances_completed: Family::default(),
            rebalance_seconds: Family::new_with_constructor(seconds_histogram),
            since_rebalance: Family::default(),
            leader: Family::default(),
            connector_state: Family::default(),
            task_state: Family::default(),
            source_polled: Family::default(),
            source_written: Family::default(),
            source_poll_seconds: Family::new_with_constructor(seconds_histogram),
            source_active: Family::default(),
            sink_read: Family::default(),
            sink_sent: Family::default(),
            sink_put_seconds: Family::new_with_constructor(seconds_histogram),
            sink_partitions: Family::default(),
            sink_lag: Family::default(),
            commits: Family::default(),
            commit_seconds: Family::new_with_constructor(seconds_histogram),
            record_errors: Family::default(),
            record_failures: Family::default(),
            records_skipped: Family::default(),
            retries: Family::default(),
            dlq_requests: Family::default(),
            dlq_failures: Family::default(),
            restarts: Family::default(),
        };
        let f = &families;
        let r = &mut registry;
        r.register(
            "worker_connectors",
            "Connectors running on this worker.",
            f.connectors.clone(),
        );
        r.register(
            "worker_tasks",
            "Tasks assigned to this worker.",
            f.tasks.clone(),
        );
        r.register(
            "worker_connector_startup_attempts",
            "Connector starts attempted on this worker.",
            f.connector_startup_attempts.clone(),
        );
        r.register(
            "worker_connector_startup_failures",
            "Connector starts that failed on this worker.",
            f.connector_startup_failures.clone(),
        );
        r.register(
            "worker_task_startup_attempts",
            "Task starts attempted on this worker (automatic restarts included).",
            f.task_startup_attempts.clone(),
        );
        r.register(
            "worker_task_startup_failures",
            "Task starts that failed on this worker.",
            f.task_startup_failures.clone(),
        );
        r.register(
            "rebalance_epoch",
            "The worker group's generation as of the last rebalance.",
            f.rebalance_epoch.clone(),
        );
        r.register(
            "rebalancing",
            "1 while this worker is rebalancing.",
            f.rebalancing.clone(),
        );
        r.register(
            "rebalances_completed",
            "Rebalances this worker completed.",
            f.rebalances_completed.clone(),
        );
        r.register_with_unit(
            "rebalance",
            "How long this worker's rebalances took.",
            Unit::Seconds,
            f.rebalance_seconds.clone(),
        );
        r.register_with_unit(
            "time_since_last_rebalance",
            "Time since this worker's last completed rebalance.",
            Unit::Seconds,
            f.since_rebalance.clone(),
        );
        r.register(
            "worker_is_leader",
            "1 when this worker leads the group.",
            f.leader.clone(),
        );
        r.register(
            "connector_status",
            "1 for the state each connector is in (as this worker reads the status topic).",
            f.connector_state.clone(),
        );
        r.register(
            "task_status",
            "1 for the state each task is in (as this worker reads the status topic).",
            f.task_state.clone(),
        );
        r.register(
            "source_records_polled",
            "Records a source task polled from its system (before transforms).",
            f.source_polled.clone(),
        );
        r.register(
            "source_records_written",
            "Records of a source task that Kafka acknowledged (after transforms).",
            f.source_written.clone(),
        );
        r.register_with_unit(
            "source_poll_batch",
            "How long a source task's poll for a batch took.",
            Unit::Seconds,
            f.source_poll_seconds.clone(),
        );
        r.register(
            "source_records_active",
            "Records a source task sent that Kafka has not acknowledged yet.",
            f.source_active.clone(),
        );
        r.register(
            "sink_records_read",
            "Records a sink task read from Kafka.",
            f.sink_read.clone(),
        );
        r.register(
            "sink_records_sent",
            "Records a sink task handed to its system (after transforms).",
            f.sink_sent.clone(),
        );
        r.register_with_unit(
            "sink_put_batch",
            "How long a sink task's put of a batch took.",
            Unit::Seconds,
            f.sink_put_seconds.clone(),
        );
        r.register(
            "sink_partitions",
            "Topic partitions assigned to a sink task.",
            f.sink_partitions.clone(),
        );
        r.register(
            "sink_records_lag",
            "Records behind the end of its partitions (sum over a sink task's partitions).",
            f.sink_lag.clone(),
        );
        r.register(
            "offset_commits",
            "Offset commits of a task, by result (success, failure).",
            f.commits.clone(),
        );
        r.register_with_unit(
            "offset_commit",
            "How long a task's offset commits took.",
            Unit::Seconds,
            f.commit_seconds.clone(),
        );
        r.register(
            "task_record_errors",
            "Records that failed in a conversion, transform or put stage.",
            f.record_errors.clone(),
        );
        r.register(
            "task_record_failures",
            "Records whose failure stopped the task (errors.tolerance none).",
            f.record_failures.clone(),
        );
        r.register(
            "task_records_skipped",
            "Records skipped under errors.tolerance all (dead-lettered when a topic is set).",
            f.records_skipped.clone(),
        );
        r.register(
            "task_retries",
            "Retries of a task's operations after transient failures.",
            f.retries.clone(),
        );
        r.register(
            "dlq_produce_requests",
            "Records a task sent to its dead-letter topic.",
            f.dlq_requests.clone(),
        );
        r.register(
            "dlq_produce_failures",
            "Dead-letter records Kafka did not accept.",
            f.dlq_failures.clone(),
        );
        r.register(
            "task_restarts",
            "Automatic restarts of a failed task.",
            f.restarts.clone(),
        );
        Self {
            worker: worker.to_owned(),
            registry,
            families,
            tasks: Mutex::new(BTreeMap::new()),
            rebalance_began: Mutex::new(None),
            last_rebalance: Mutex::new(None),
        }
    }

    fn worker_labels(&self) -> WorkerLabels {
        WorkerLabels {
            worker: self.worker.clone(),
        }
    }

    /// The counters of task `id` (the same ones across its restarts on this worker).
    pub fn task(&self, id: &TaskId) -> Arc<TaskMetrics> {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .entry(id.clone())
            .or_insert_with(|| {
                let labels = TaskLabels {
                    connector: id.connector.clone(),
                    task: id.task.to_string(),
                    worker: self.worker.clone(),
                };
                Arc::new(TaskMetrics::new(&self.families, labels))
            })
            .clone()
    }

    /// Forgets task `id` (it no longer runs here): its series leave the output.
    pub fn remove_task(&self, id: &TaskId) {
        let removed = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(task) = removed {
            task.unregister(&self.families);
        }
    }

    /// The tasks this worker keeps counters for.
    pub fn tasks(&self) -> Vec<(TaskId, Arc<TaskMetrics>)> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect()
    }

    pub fn connector_start(&self, failed: bool) {
        let labels = self.worker_labels();
        self.families
            .connector_startup_attempts
            .get_or_create(&labels)
            .inc();
        if failed {
            self.families
                .connector_startup_failures
                .get_or_create(&labels)
                .inc();
        }
    }

    pub fn task_start(&self, failed: bool) {
        let labels = self.worker_labels();
        self.families
            .task_startup_attempts
            .get_or_create(&labels)
            .inc();
        if failed {
            self.families
                .task_startup_failures
                .get_or_create(&labels)
                .inc();
        }
    }

    /// A rebalance began (this worker joins the group).
    pub fn rebalance_started(&self) {
        let mut began = self
            .rebalance_began
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        began.get_or_insert_with(Instant::now);
        self.families
            .rebalancing
            .get_or_create(&self.worker_labels())
            .set(1);
    }

    /// A rebalance completed with generation `epoch`.
    pub fn rebalance_completed(&self, epoch: i32) {
        let labels = self.worker_labels();
        let began = self
            .rebalance_began
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(began) = began {
            self.families
                .rebalance_seconds
                .get_or_create(&labels)
                .observe(began.elapsed().as_secs_f64());
        }
        *self
            .last_rebalance
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let f = &self.families;
        f.rebalancing.get_or_create(&labels).set(0);
        f.rebalances_completed.get_or_create(&labels).inc();
        f.rebalance_epoch
            .get_or_create(&labels)
            .set(i64::from(epoch));
    }

    /// The OpenMetrics text of every metric, with the cluster's view as of now.
    pub fn encode(&self, view: &ClusterView) -> String {
        let f = &self.families;
        let labels = self.worker_labels();
        f.connectors
            .get_or_create(&labels)
            .set(view.connectors as i64);
        f.tasks.get_or_create(&labels).set(view.tasks as i64);
        f.leader
            .get_or_create(&labels)
            .set(i64::from(view.is_leader));
        if let Some(last) = *self
            .last_rebalance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            f.since_rebalance
                .get_or_create(&labels)
                .set(last.elapsed().as_secs_f64());
        }
        f.connector_state.clear();
        for (connector, state) in &view.connector_states {
            f.connector_state
                .get_or_create(&ConnectorStateLabels {
                    connector: connector.clone(),
                    state: state.clone(),
                    worker: self.worker.clone(),
                })
                .set(1);
        }
        f.task_state.clear();
        for (id, state) in &view.task_states {
            f.task_state
                .get_or_create(&TaskStateLabels {
                    connector: id.connector.clone(),
                    task: id.task.to_string(),
                    state: state.clone(),
                    worker: self.worker.clone(),
                })
                .set(1);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// What the cluster looks like to this worker, for the gauges filled in when scraped.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub connectors: usize,
    pub tasks: usize,
    pub is_leader: bool,
    pub connector_states: Vec<(String, String)>,
    pub task_states: Vec<(TaskId, String)>,
}

/// The counters one task counts into.
#[derive(Debug)]
pub struct TaskMetrics {
    labels: TaskLabels,
    pub source_polled: Counter,
    pub source_written: Counter,
    pub source_poll_seconds: Histogram,
    pub source_active: Gauge,
    pub sink_read: Counter,
    pub sink_sent: Counter,
    pub sink_put_seconds: Histogram,
    pub sink_partitions: Gauge,
    pub sink_lag: Gauge,
    commit_success: Counter,
    commit_failure: Counter,
    commit_seconds: Histogram,
    pub record_errors: Counter,
    pub record_failures: Counter,
    pub records_skipped: Counter,
    pub retries: Counter,
    pub dlq_requests: Counter,
    pub dlq_failures: Counter,
    pub restarts: Counter,
    /// Set while a failed task waits for its automatic restart.
    pub restart_pending: AtomicBool,
}

impl TaskMetrics {
    fn new(f: &Families, labels: TaskLabels) -> Self {
        let commit = |result| CommitLabels {
            connector: labels.connector.clone(),
            task: labels.task.clone(),
            worker: labels.worker.clone(),
            result,
        };
        Self {
            source_polled: f.source_polled.get_or_create_owned(&labels),
            source_written: f.source_written.get_or_create_owned(&labels),
            source_poll_seconds: f.source_poll_seconds.get_or_create_owned(&labels),
            source_active: f.source_active.get_or_create_owned(&labels),
            sink_read: f.sink_read.get_or_create_owned(&labels),
            sink_sent: f.sink_sent.get_or_create_owned(&labels),
            sink_put_seconds: f.sink_put_seconds.get_or_create_owned(&labels),
            sink_partitions: f.sink_partitions.get_or_create_owned(&labels),
            sink_lag: f.sink_lag.get_or_create_owned(&labels),
            commit_success: f.commits.get_or_create_owned(&commit("success")),
            commit_failure: f.commits.get_or_create_owned(&commit("failure")),
            commit_seconds: f.commit_seconds.get_or_create_owned(&labels),
            record_errors: f.record_errors.get_or_create_owned(&labels),
            record_failures: f.record_failures.get_or_create_owned(&labels),
            records_skipped: f.records_skipped.get_or_create_owned(&labels),
            retries: f.retries.get_or_create_owned(&labels),
            dlq_requests: f.dlq_requests.get_or_create_owned(&labels),
            dlq_failures: f.dlq_failures.get_or_create_owned(&labels),
            restarts: f.restarts.get_or_create_owned(&labels),
            restart_pending: AtomicBool::new(false),
            labels,
        }
    }

    /// Counters for a task outside a worker (tests, tools): registered nowhere.
    pub fn detached() -> Arc<Self> {
        Arc::new(Self::new(
            &Metrics::new("detached").families,
            TaskLabels {
                connector: String::new(),
                task: String::new(),
                worker: String::new(),
            },
        ))
    }

    /// Records an offset commit that took `took`.
    pub fn commit(&self, took: Duration, ok: bool) {
        self.commit_seconds.observe(took.as_secs_f64());
        if ok {
            self.commit_success.inc();
        } else {
            self.commit_failure.inc();
        }
    }

    pub fn skipped(&self) -> u64 {
        self.records_skipped.get()
    }

    pub fn restart_count(&self) -> u64 {
        self.restarts.get()
    }

    pub fn is_restart_pending(&self) -> bool {
        self.restart_pending.load(Ordering::Relaxed)
    }

    fn unregister(&self, f: &Families) {
        let l = &self.labels;
        f.source_polled.remove(l);
        f.source_written.remove(l);
        f.source_poll_seconds.remove(l);
        f.source_active.remove(l);
        f.sink_read.remove(l);
        f.sink_sent.remove(l);
        f.sink_put_seconds.remove(l);
        f.sink_partitions.remove(l);
        f.sink_lag.remove(l);
        for result in ["success", "failure"] {
            f.commits.remove(&CommitLabels {
                connector: l.connector.clone(),
                task: l.task.clone(),
                worker: l.worker.clone(),
                result,
            });
        }
        f.commit_seconds.remove(l);
        f.record_errors.remove(l);
        f.record_failures.remove(l);
        f.records_skipped.remove(l);
        f.retries.remove(l);
        f.dlq_requests.remove(l);
        f.dlq_failures.remove(l);
        f.restarts.remove(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_counters_show_up_labelled_and_leave_when_removed() {
        let metrics = Metrics::new("w1:8083");
        let id = TaskId::new("orders", 2);
        let task = metrics.task(&id);
        task.source_polled.inc_by(7);
        task.commit(Duration::from_millis(3), true);
        let view = ClusterView {
            connectors: 1,
            tasks: 1,
            task_states: vec![(id.clone(), "RUNNING".into())],
            ..ClusterView::default()
        };
        let text = metrics.encode(&view);
        assert!(
            text.contains(
                r#"sluice_source_records_polled_total{connector="orders",task="2",worker="w1:8083"} 7"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"sluice_offset_commits_total{connector="orders",task="2",worker="w1:8083",result="success"} 1"#
        ));
        assert!(text.contains(
            r#"sluice_task_status{connector="orders",task="2",state="RUNNING",worker="w1:8083"} 1"#
        ));
        // The same counters after a restart.
        assert_eq!(metrics.task(&id).source_polled.get(), 7);
        metrics.remove_task(&id);
        let text = metrics.encode(&ClusterView::default());
        assert!(!text.contains(r#"task="2""#), "{text}");
    }
}
