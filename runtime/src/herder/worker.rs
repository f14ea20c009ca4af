//! The herder: what a worker runs, reconciled with its assignment and the connector configs.
//!
//! Distributed mode: workers share connectors and tasks through the group protocol and keep
//! configs, offsets and states in internal topics; the leader writes the config topic for
//! everyone. Standalone mode is the same machinery with one member that is always the leader,
//! configs and states in memory, and source offsets in a file.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde_json::{Map, Value as Json};
use sluice_connector_api::{ConnectorConfig, Registry};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::launch::{Started, TaskHooks, TaskRun, start_connector, task_run};
use crate::cluster::{
    ClusterError, KafkaSecurity, LeaderContext, Member, MemberAssignment, MemberCommand,
    MemberConfig, MemberEvent, MemberMetadata, TaskId, Work, configured_work,
};
use crate::config::{
    Pipeline, WorkerConfig, flat_from_pipeline_settings, pipeline_from_flat, resolve_providers_with,
};
use crate::error::{Error, TaskError};
use crate::metrics::{Metrics, TaskMetrics};
use crate::storage::{
    ConfigState, ConfigStore, FileOffsetStore, InternalTopic, OffsetStore, RestartRequest,
    RunState, Status, StatusStore, TargetState, TopicOffsetStore, ensure_internal_topics,
};
use crate::task::TopicReport;

/// Bound on a connector instance's `start`/`stop`, so one slow external system cannot hold up
/// the worker's reaction to rebalances.
const CONNECTOR_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Who leads the group and what this worker was assigned, as of the last rebalance.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    pub generation: i32,
    pub is_leader: bool,
    pub leader_url: Option<String>,
    pub assigned: Work,
}

/// The parts of a distributed worker the REST API and the reconcile loop share.
pub struct Cluster {
    pub(crate) worker: WorkerConfig,
    pub(crate) registry: Registry,
    /// This worker's REST URL, also its worker id.
    pub url: String,
    /// The signing, TLS-configured client for calls to other workers.
    pub(crate) peers: crate::rest::Peers,
    pub configs: ConfigStore,
    pub status: StatusStore,
    pub offsets: Arc<dyn OffsetStore>,
    membership: Mutex<Membership>,
    /// Configured work as of the last assignment this worker computed as leader.
    led: Arc<Mutex<Option<Work>>>,
    rejoin: mpsc::Sender<MemberCommand>,
    /// Wakes the reconcile loop (task configs written, restart requested...).
    poke: mpsc::Sender<()>,
    /// Serializes the leader's check-then-write changes of the config topic.
    writes: tokio::sync::Mutex<()>,
    /// This worker's metrics, with the counters of each task it runs (or ran).
    pub metrics: Metrics,
    /// When the reconcile loop last went round (for the liveness check).
    heartbeat: Mutex<std::time::Instant>,
}

impl Cluster {
    pub fn membership(&self) -> Membership {
        self.membership
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn worker_id(&self) -> &str {
        worker_id_of(&self.url)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn worker_config(&self) -> &WorkerConfig {
        &self.worker
    }

    /// The configured work: every connector, and its committed tasks.
    fn configured(state: &ConfigState) -> Work {
        configured_work(
            state
                .connectors
                .keys()
                .map(|name| (name.as_str(), state.task_count(name))),
        )
    }

    /// Leader only: asks for a rebalance when the configured work changed since the last round.
    async fn rebalance_if_needed(&self) {
        if !self.membership().is_leader {
            return;
        }
        let configured = Self::configured(&self.configs.snapshot());
        let changed = self
            .led
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|led| *led != configured);
        if changed {
            info!("configuration changed what runs; rebalancing");
            let _ = self.rejoin.send(MemberCommand::Rejoin).await;
        }
    }

    /// Holds off other config writes of this worker (the leader) while a change is checked
    /// against the current state and written.
    pub async fn write_guard(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Leader only: stores a connector's task configs (sent by the worker running it).
    pub async fn put_task_configs(
        &self,
        connector: &str,
        tasks: &[Map<String, Json>],
    ) -> Result<(), crate::storage::StorageError> {
        let _guard = self.write_guard().await;
        self.put_task_configs_locked(connector, tasks).await
    }

    /// [`put_task_configs`](Self::put_task_configs) for a caller holding the write guard.
    pub async fn put_task_configs_locked(
        &self,
        connector: &str,
        tasks: &[Map<String, Json>],
    ) -> Result<(), crate::storage::StorageError> {
        let current = self.configs.snapshot();
        if current.tasks.get(connector).map(Vec::as_slice) == Some(tasks) {
            return Ok(());
        }
        // A stopped connector has no tasks: configs from an instance that was still running when
        // the stop landed are dropped (resuming generates them again).
        if !tasks.is_empty()
            && (current.target(connector) == TargetState::Stopped
                || !current.connectors.contains_key(connector))
        {
            info!(%connector, "ignoring task configs for a stopped or deleted connector");
            return Ok(());
        }
        self.configs.put_tasks(connector, tasks).await?;
        self.rebalance_if_needed().await;
        Ok(())
    }

    /// Records skipped by each task this worker runs (or ran), under `errors.tolerance: all`.
    pub fn skipped_records(&self) -> Vec<(TaskId, u64)> {
        self.metrics
            .tasks()
            .into_iter()
            .map(|(id, m)| (id, m.skipped()))
            .collect()
    }

    /// How long ago the worker's reconcile loop last went round (it does every few seconds).
    pub fn since_heartbeat(&self) -> Duration {
        self.heartbeat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn beat(&self) {
        *self.heartbeat.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    }

    /// Wakes the reconcile loop.
    pub fn poke(&self) {
        let _ = self.poke.try_send(());
    }

    /// Writes a task's state with its restart count; a failed write is logged.
    async fn put_task_state(
        &self,
        id: &TaskId,
        state: RunState,
        trace: Option<String>,
        metrics: &TaskMetrics,
    ) {
        let mut status = self.status_of(state, trace);
        let restarts = metrics.restart_count();
        status.restarts = (restarts > 0).then_some(restarts);
        if let Err(e) = self.status.put_task(id, status).await {
            warn!(task = %id, error = %e, "cannot write task status");
        }
    }

    fn status_of(&self, state: RunState, trace: Option<String>) -> Status {
        Status {
            state,
            trace,
            worker_id: self.worker_id().to_owned(),
            generation: self.membership().generation,
            records_skipped: None,
            restarts: None,
        }
    }
}

struct LeaderView(ConfigStore, Arc<Mutex<Option<Work>>>);

#[async_trait]
impl LeaderContext for LeaderView {
    async fn configured(&self, min_offset: i64) -> Result<(Work, i64), ClusterError> {
        let mut state = self.0.snapshot();
        if state.offset < min_offset {
            // Bounded well below the session timeout: a leader stuck here would be expelled.
            tokio::time::timeout(Duration::from_secs(3), self.0.read_to_end())
                .await
                .map_err(|_| ClusterError::Store("config topic not read to its end in 3 s".into()))?
                .map_err(|e| ClusterError::Store(e.to_string()))?;
            state = self.0.snapshot();
        }
        let work = Cluster::configured(&state);
        *self.1.lock().unwrap_or_else(|e| e.into_inner()) = Some(work.clone());
        Ok((work, state.offset))
    }
}

struct RunningConnector {
    props: Map<String, Json>,
    target: TargetState,
    instance: Option<Started>,
    /// Handing task configs to the leader; cancelled when the instance stops, so configs of
    /// an older instance never land after a newer one's.
    submitting: Option<JoinHandle<()>>,
    /// The instance being started in the background.
    starting: Option<JoinHandle<()>>,
    /// The task configs the running instance generated.
    generated: Option<Vec<Map<String, Json>>>,
    /// Which start this is: results of an older start are discarded.
    epoch: u64,
}

/// The outcome of starting a connector instance in the background.
struct ConnectorStarted {
    connector: String,
    epoch: u64,
    result: Result<(Started, Vec<ConnectorConfig>), String>,
}

struct RunningTask {
    config: Map<String, Json>,
    /// None while paused.
    run: Option<(CancellationToken, JoinHandle<()>)>,
}

/// What this worker runs.
#[derive(Default)]
struct Running {
    connectors: BTreeMap<String, RunningConnector>,
    tasks: BTreeMap<TaskId, RunningTask>,
}

/// How a worker runs.
pub enum Mode {
    /// Join the cluster named by the worker file's `cluster` block.
    Distributed,
    /// Run alone: configs and states in memory, offsets in the worker's offsets file; starts
    /// with `pipelines` and stops with an error if one of them cannot start or every task fails.
    Standalone { pipelines: Vec<Pipeline> },
}

/// Runs a worker until `cancel` fires. `url` is its REST URL (its id); `ready` receives the
/// shared state once the worker has read its config and can serve requests.
pub async fn run_herder(
    worker: WorkerConfig,
    registry: Registry,
    url: String,
    peers: crate::rest::Peers,
    mode: Mode,
    cancel: CancellationToken,
    ready: impl FnOnce(Arc<Cluster>),
) -> Result<(), Error> {
    let stores = cancel.child_token();
    let (rejoin_tx, rejoin_rx) = mpsc::channel(8);
    let (poke_tx, mut poke_rx) = mpsc::channel(1);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let led = Arc::new(Mutex::new(None));
    let membership_cancel = CancellationToken::new();
    let standalone = matches!(mode, Mode::Standalone { .. });
    let (configs, offsets, status, member_task, initial) = match mode {
        Mode::Distributed => {
            let (configs, offsets, status) = open_internal_topics(&worker, &url, &stores).await?;
            let config_offset = configs.snapshot().offset;
            info!(worker = %url, config_offset, "read the config topic");
            let settings = &worker.cluster;
            let (local_tx, local_rx) = watch::channel(MemberMetadata {
                url: url.clone(),
                config_offset,
                owned: Work::default(),
            });
            let member = Member::new(
                MemberConfig {
                    bootstrap_servers: worker.bootstrap_servers.clone(),
                    group_id: settings.group_id.clone(),
                    client_id: format!("sluice-worker-{}", sanitize(&url)),
                    session_timeout: Duration::from_millis(settings.session_timeout),
                    rebalance_timeout: Duration::from_millis(settings.rebalance_timeout),
                    heartbeat_interval: Duration::from_millis(settings.heartbeat_interval),
                    scheduled_rebalance_max_delay: Duration::from_millis(
                        settings.scheduled_rebalance_max_delay,
                    ),
                    security: KafkaSecurity::from_settings(&worker.kafka)
                        .map_err(|e| Error::Membership(e.to_string()))?,
                },
                local_rx,
                Arc::new(LeaderView(configs.clone(), led.clone())),
                events_tx,
            );
            let task = tokio::spawn(member.run(rejoin_rx, membership_cancel.clone()));
            (configs, offsets, status, (task, Some(local_tx)), Vec::new())
        }
        Mode::Standalone { pipelines } => {
            let configs = ConfigStore::memory();
            let offsets: Arc<dyn OffsetStore> =
                Arc::new(FileOffsetStore::open(&worker.offsets_file).await?);
            let status = StatusStore::memory();
            let mut names = Vec::new();
            for pipeline in &pipelines {
                let name = &pipeline.settings.name;
                configs.put_target(name, TargetState::Started).await?;
                configs
                    .put_connector(name, &flat_from_pipeline_settings(pipeline))
                    .await?;
                names.push(name.clone());
            }
            let task = tokio::spawn(solo_member(
                configs.clone(),
                url.clone(),
                led.clone(),
                events_tx,
                rejoin_rx,
                membership_cancel.clone(),
            ));
            (configs, offsets, status, (task, None), names)
        }
    };
    let (member_task, local) = member_task;
    let cluster = Arc::new(Cluster {
        worker: worker.clone(),
        registry,
        url: url.clone(),
        peers,
        configs: configs.clone(),
        status,
        offsets,
        membership: Mutex::new(Membership::default()),
        led: led.clone(),
        rejoin: rejoin_tx,
        poke: poke_tx,
        writes: tokio::sync::Mutex::new(()),
        metrics: Metrics::new(worker_id_of(&url)),
        heartbeat: Mutex::new(std::time::Instant::now()),
    });
    ready(cluster.clone());

    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let mut reconciler = Reconciler {
        cluster: cluster.clone(),
        running: Running::default(),
        started: started_tx,
        epoch: 0,
        local,
        restarts_seen: configs.snapshot().restarts.last().map_or(-1, |r| r.offset),
    };
    let mut changes = configs.changes();
    let mut pending_initial = !initial.is_empty();
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut resync = tokio::time::interval(Duration::from_secs(5));
    let outcome = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            event = events.recv() => match event {
                Some(event) => reconciler.on_member_event(event).await,
                None => break Ok(()),
            },
            Some(started) = started_rx.recv() => reconciler.on_connector_started(started).await,
            changed = changes.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                reconciler.reconcile().await;
                cluster.rebalance_if_needed().await;
            }
            _ = poke_rx.recv() => reconciler.reconcile().await,
            // A periodic look, so anything a lost message left undone is picked up again.
            _ = resync.tick() => {
                reconciler.reconcile().await;
                reconciler.publish_error_counts().await;
            }
            _ = check.tick(), if standalone => {
                if every_task_failed(&cluster) {
                    break Err(Error::AllTasksFailed);
                }
            }
        }
        cluster.beat();
        // Standalone: once every pipeline given at start has started (or failed).
        if pending_initial && initial_settled(&cluster, &initial) {
            pending_initial = false;
            if let Some(error) = initial_failure(&cluster, &initial) {
                break Err(error);
            }
        }
    };
    info!("stopping: stopping tasks and connectors");
    reconciler.stop_all().await;
    membership_cancel.cancel();
    let _ = member_task.await;
    stores.cancel();
    outcome
}

/// Creates (when missing) and reads the three internal topics, side by side.
async fn open_internal_topics(
    worker: &WorkerConfig,
    url: &str,
    stores: &CancellationToken,
) -> Result<(ConfigStore, Arc<dyn OffsetStore>, StatusStore), Error> {
    let settings = &worker.cluster;
    ensure_internal_topics(
        worker,
        &[
            InternalTopic {
                name: settings.config_topic.clone(),
                partitions: 1,
                replication_factor: settings.replication_factor,
            },
            InternalTopic {
                name: settings.offsets_topic.clone(),
                partitions: settings.offsets_partitions,
                replication_factor: settings.replication_factor,
            },
            InternalTopic {
                name: settings.status_topic.clone(),
                partitions: settings.status_partitions,
                replication_factor: settings.replication_factor,
            },
        ],
    )
    .await?;
    let client = format!("sluice-worker-{}", sanitize(url));
    let (configs, offsets, status) = tokio::try_join!(
        async {
            let configs =
                ConfigStore::start(worker, &settings.config_topic, &client, stores.clone()).await?;
            configs.read_to_end().await?;
            Ok::<_, crate::storage::StorageError>(configs)
        },
        async {
            let offsets =
                TopicOffsetStore::start(worker, &settings.offsets_topic, &client, stores.clone())
                    .await?;
            OffsetStore::read_to_end(&offsets).await?;
            Ok(offsets)
        },
        StatusStore::start(worker, &settings.status_topic, &client, stores.clone()),
    )?;
    Ok((configs, Arc::new(offsets), status))
}

/// Standalone membership: one member, always the leader, assigned every configured connector
/// and task; a rejoin request (a config change) makes a new assignment.
async fn solo_member(
    configs: ConfigStore,
    url: String,
    led: Arc<Mutex<Option<Work>>>,
    events: mpsc::UnboundedSender<MemberEvent>,
    mut commands: mpsc::Receiver<MemberCommand>,
    cancel: CancellationToken,
) {
    let mut generation = 0;
    loop {
        generation += 1;
        let state = configs.snapshot();
        let work = Cluster::configured(&state);
        *led.lock().unwrap_or_else(|e| e.into_inner()) = Some(work.clone());
        let event = MemberEvent::Assigned {
            generation,
            member_id: "standalone".into(),
            is_leader: true,
            assignment: MemberAssignment {
                leader: "standalone".into(),
                leader_url: url.clone(),
                config_offset: state.offset,
                assigned: work,
                revoked: Work::default(),
                delay_ms: 0,
            },
        };
        if events.send(event).is_err() {
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            command = commands.recv() => if command.is_none() {
                return;
            },
        }
    }
}

/// Standalone: whether every pipeline given at start has a connector state yet.
fn initial_settled(cluster: &Cluster, names: &[String]) -> bool {
    names
        .iter()
        .all(|name| cluster.status.connector(name).is_some())
}

/// Standalone: the first of the pipelines given at start whose connector could not start.
fn initial_failure(cluster: &Cluster, names: &[String]) -> Option<Error> {
    names.iter().find_map(|name| {
        let status = cluster.status.connector(name)?;
        (status.state == RunState::Failed).then(|| Error::ConnectorFailed {
            connector: name.clone(),
            trace: status.trace.unwrap_or_default(),
        })
    })
}

/// Standalone: true once there are tasks and every one of them has failed.
fn every_task_failed(cluster: &Cluster) -> bool {
    let state = cluster.configs.snapshot();
    let mut tasks = 0;
    for name in state.connectors.keys() {
        let count = state.task_count(name);
        for task in 0..count {
            tasks += 1;
            let id = TaskId::new(name.as_str(), task);
            let restarting = cluster.metrics.task(&id).is_restart_pending();
            let failed = !restarting
                && cluster
                    .status
                    .task(&id)
                    .is_some_and(|s| s.state == RunState::Failed);
            if !failed {
                return false;
            }
        }
    }
    tasks > 0
}

/// A worker's id: its REST URL without the scheme.
fn worker_id_of(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

fn sanitize(url: &str) -> String {
    url.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

struct Reconciler {
    cluster: Arc<Cluster>,
    running: Running,
    /// Connector instances report here when they finished starting.
    started: mpsc::UnboundedSender<ConnectorStarted>,
    /// Counts connector starts, to tell a current start from a replaced one.
    epoch: u64,

    /// Distributed mode: what this worker runs, for the membership's metadata.
    local: Option<watch::Sender<MemberMetadata>>,
    /// Offset of the newest restart request already applied.
    restarts_seen: i64,
}

impl Reconciler {
    async fn on_member_event(&mut self, event: MemberEvent) {
        match event {
            MemberEvent::Joining => self.cluster.metrics.rebalance_started(),
            MemberEvent::Assigned {
                generation,
                is_leader,
                assignment,
                ..
            } => {
                self.cluster.metrics.rebalance_completed(generation);
                if self.cluster.configs.snapshot().offset < assignment.config_offset
                    && let Err(e) = self.cluster.configs.read_to_end().await
                {
                    warn!(error = %e, "cannot read the config topic to the assignment's offset");
                }
                {
                    let mut m = self
                        .cluster
                        .membership
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    m.generation = generation;
                    m.is_leader = is_leader;
                    m.leader_url = Some(assignment.leader_url.clone());
                    m.assigned = assignment.assigned.clone();
                }
                self.reconcile().await;
                if !assignment.revoked.is_empty() {
                    // Revoked work is stopped now; rejoin so it can move.
                    let _ = self.cluster.rejoin.send(MemberCommand::Rejoin).await;
                }
                // A config change may have landed while the round ran.
                self.cluster.rebalance_if_needed().await;
            }
            MemberEvent::Lost => {
                {
                    let mut m = self
                        .cluster
                        .membership
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    m.assigned = Work::default();
                    m.is_leader = false;
                    m.leader_url = None;
                }
                self.stop_all().await;
            }
        }
    }

    /// Puts the skipped-record counts of tasks run here into their statuses, where they changed.
    async fn publish_error_counts(&self) {
        for (id, n) in self.cluster.skipped_records() {
            let result = self
                .cluster
                .status
                .put_task_skipped(&id, self.cluster.worker_id(), n)
                .await;
            if let Err(e) = result {
                warn!(task = %id, error = %e, "cannot write task status");
            }
        }
    }

    fn publish_owned(&self) {
        let Some(local) = &self.local else {
            return;
        };
        let owned = Work {
            connectors: self.running.connectors.keys().cloned().collect(),
            tasks: self.running.tasks.keys().cloned().collect(),
        };
        let offset = self.cluster.configs.snapshot().offset;
        local.send_modify(|m| {
            m.owned = owned;
            m.config_offset = offset;
        });
    }

    async fn reconcile(&mut self) {
        let state = self.cluster.configs.snapshot();
        let assigned = self.cluster.membership().assigned;
        self.apply_restarts(&state).await;

        // Stop what is no longer ours or no longer configured.
        let gone: Vec<String> = self
            .running
            .connectors
            .keys()
            .filter(|n| !assigned.connectors.contains(*n) || !state.connectors.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            let deleted = !state.connectors.contains_key(&name);
            self.stop_connector(&name).await;
            let result = if deleted {
                self.cluster.status.delete_connector(&name).await
            } else {
                let status = self.cluster.status_of(RunState::Unassigned, None);
                self.cluster.status.put_connector(&name, status).await
            };
            if let Err(e) = result {
                warn!(connector = %name, error = %e, "cannot write connector status");
            }
        }
        let gone: Vec<TaskId> = self
            .running
            .tasks
            .keys()
            .filter(|id| {
                !assigned.tasks.contains(*id) || id.task >= state.task_count(&id.connector)
            })
            .cloned()
            .collect();
        for id in gone {
            let deconfigured = id.task >= state.task_count(&id.connector);
            self.stop_task(&id).await;
            self.cluster.metrics.remove_task(&id);
            let result = if deconfigured {
                self.cluster.status.delete_task(&id).await
            } else {
                let status = self.cluster.status_of(RunState::Unassigned, None);
                self.cluster.status.put_task(&id, status).await
            };
            if let Err(e) = result {
                warn!(task = %id, error = %e, "cannot write task status");
            }
        }

        // Connectors: start, restart on config change, follow the target state.
        for name in assigned
            .connectors
            .iter()
            .filter(|n| state.connectors.contains_key(*n))
        {
            let props = &state.connectors[name];
            let target = state.target(name);
            let restart = match self.running.connectors.get(name) {
                None => true,
                Some(r) => r.props != *props || r.target != target,
            };
            if restart {
                self.stop_connector(name).await;
                self.start_connector(name, props, target).await;
                continue;
            }
            // A running instance whose task configs are not (or no longer) the committed ones
            // hands them in again: a submission can be lost to a leader change or refused while
            // a stop was still in effect.
            let resubmit = self.running.connectors.get(name).and_then(|r| {
                let generated = r.generated.as_ref()?;
                let idle = r.submitting.as_ref().is_none_or(JoinHandle::is_finished);
                (idle && target != TargetState::Stopped && state.tasks.get(name) != Some(generated))
                    .then(|| generated.clone())
            });
            if let Some(tasks) = resubmit {
                let submitting = self.submit_task_configs(name, tasks);
                if let Some(running) = self.running.connectors.get_mut(name) {
                    running.submitting = submitting;
                }
            }
        }

        // Tasks: start, restart on config change, pause and resume.
        for id in &assigned.tasks {
            let Some(config) = state
                .tasks
                .get(&id.connector)
                .and_then(|t| t.get(id.task as usize))
            else {
                continue;
            };
            let target = state.target(&id.connector);
            let (changed, paused) = match self.running.tasks.get(id) {
                None => (true, false),
                Some(t) => (t.config != *config, t.run.is_none()),
            };
            let want_paused = target != TargetState::Started;
            if !changed && paused == want_paused {
                continue;
            }
            self.stop_task(id).await;
            let Some(props) = state.connectors.get(&id.connector) else {
                continue;
            };
            self.start_task(id, props, config, want_paused).await;
        }
        self.publish_owned();
    }

    /// Applies restart requests written since the last look, for the work this worker runs.
    async fn apply_restarts(&mut self, state: &ConfigState) {
        let new: Vec<RestartRequest> = state
            .restarts
            .iter()
            .filter(|r| r.offset > self.restarts_seen)
            .cloned()
            .collect();
        for request in new {
            self.restarts_seen = request.offset;
            self.restart(state, &request).await;
        }
    }

    async fn restart(&mut self, state: &ConfigState, request: &RestartRequest) {
        let name = &request.connector;
        let Some(props) = state.connectors.get(name) else {
            return;
        };
        let target = state.target(name);
        let failed = |status: Option<Status>| status.is_some_and(|s| s.state == RunState::Failed);
        if request.task.is_none()
            && self.running.connectors.contains_key(name)
            && (!request.only_failed || failed(self.cluster.status.connector(name)))
        {
            info!(connector = %name, "restarting connector");
            self.stop_connector(name).await;
            self.start_connector(name, props, target).await;
        }
        let tasks: Vec<TaskId> = self
            .running
            .tasks
            .keys()
            .filter(|id| id.connector == *name)
            .filter(|id| match request.task {
                Some(task) => id.task == task,
                None => request.include_tasks,
            })
            .filter(|id| !request.only_failed || failed(self.cluster.status.task(id)))
            .cloned()
            .collect();
        for id in tasks {
            let Some(config) = state.tasks.get(name).and_then(|t| t.get(id.task as usize)) else {
                continue;
            };
            info!(task = %id, "restarting task");
            self.stop_task(&id).await;
            self.start_task(&id, props, config, target != TargetState::Started)
                .await;
        }
    }

    fn pipeline(&self, name: &str, props: &Map<String, Json>) -> Result<Pipeline, String> {
        let policy = &self.cluster.worker.config_providers;
        pipeline_from_flat(name, props, &self.cluster.registry, policy).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Starts a connector instance in the background (an external system may be slow to
    /// answer); [`on_connector_started`](Self::on_connector_started) takes the result.
    async fn start_connector(
        &mut self,
        name: &str,
        props: &Map<String, Json>,
        target: TargetState,
    ) {
        self.epoch += 1;
        let mut running = RunningConnector {
            props: props.clone(),
            target,
            instance: None,
            submitting: None,
            starting: None,
            generated: None,
            epoch: self.epoch,
        };
        let status = match target {
            TargetState::Stopped => Some(self.cluster.status_of(RunState::Stopped, None)),
            _ => {
                match self.pipeline(name, props) {
                    Err(e) => {
                        error!(connector = %name, error = %e, "connector config is invalid");
                        self.cluster.metrics.connector_start(true);
                        Some(self.cluster.status_of(RunState::Failed, Some(e)))
                    }
                    Ok(pipeline) => {
                        let started = self.started.clone();
                        let (connector, epoch) = (name.to_owned(), self.epoch);
                        running.starting = Some(tokio::spawn(async move {
                            // A panic in the connector's start fails the connector with its
                            // message, instead of leaving it without a state.
                            let result = std::panic::AssertUnwindSafe(tokio::time::timeout(
                                CONNECTOR_CALL_TIMEOUT,
                                start_connector(&pipeline),
                            ))
                            .catch_unwind()
                            .await
                            .map_err(|panic| {
                                format!("the connector panicked: {}", panic_message(panic.as_ref()))
                            })
                            .and_then(|started| {
                                started
                                    .unwrap_or_else(|_| {
                                        Err(sluice_connector_api::ConnectorError::retriable(format!(
                                            "starting the connector took longer than {CONNECTOR_CALL_TIMEOUT:?}"
                                        )))
                                    })
                                    .map_err(|e| e.to_string())
                            });
                            let _ = started.send(ConnectorStarted {
                                connector,
                                epoch,
                                result,
                            });
                        }));
                        None
                    }
                }
            }
        };
        self.running.connectors.insert(name.to_owned(), running);
        if let Some(status) = status
            && let Err(e) = self.cluster.status.put_connector(name, status).await
        {
            warn!(connector = %name, error = %e, "cannot write connector status");
        }
    }

    /// A connector instance finished starting: keep it (or stop it if it was replaced or
    /// stopped meanwhile), record its state and hand its task configs to the leader.
    async fn on_connector_started(&mut self, started: ConnectorStarted) {
        let ConnectorStarted {
            connector: name,
            epoch,
            result,
        } = started;
        let Some(running) = self
            .running
            .connectors
            .get_mut(&name)
            .filter(|r| r.epoch == epoch)
        else {
            if let Ok((mut instance, _)) = result {
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(CONNECTOR_CALL_TIMEOUT, instance.stop()).await;
                });
            }
            return;
        };
        running.starting = None;
        let status = match result {
            Ok((instance, tasks)) => {
                running.instance = Some(instance);
                info!(connector = %name, tasks = tasks.len(), "connector started");
                self.cluster.metrics.connector_start(false);
                let tasks =
                    with_placeholders(&running.props, tasks, &self.cluster.worker.config_providers);
                let tasks: Vec<Map<String, Json>> = tasks.into_iter().map(|c| c.0).collect();
                running.generated = Some(tasks.clone());
                let state = if running.target == TargetState::Paused {
                    RunState::Paused
                } else {
                    RunState::Running
                };
                let submitting = self.submit_task_configs(&name, tasks);
                if let Some(running) = self.running.connectors.get_mut(&name) {
                    running.submitting = submitting;
                }
                self.cluster.status_of(state, None)
            }
            Err(e) => {
                error!(connector = %name, error = %e, "connector failed to start");
                self.cluster.metrics.connector_start(true);
                self.cluster.status_of(RunState::Failed, Some(e))
            }
        };
        if let Err(e) = self.cluster.status.put_connector(&name, status).await {
            warn!(connector = %name, error = %e, "cannot write connector status");
        }
    }

    /// Sends new task configs to the leader (directly when this worker leads).
    fn submit_task_configs(
        &self,
        name: &str,
        tasks: Vec<Map<String, Json>>,
    ) -> Option<JoinHandle<()>> {
        if self.cluster.configs.snapshot().tasks.get(name) == Some(&tasks) {
            return None;
        }
        let cluster = self.cluster.clone();
        let name = name.to_owned();
        // Not awaited here: the leader may be this worker's own REST API or busy rebalancing.
        Some(tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            for _ in 0..50 {
                let membership = cluster.membership();
                let result = if membership.is_leader {
                    cluster
                        .put_task_configs(&name, &tasks)
                        .await
                        .map_err(|e| e.to_string())
                } else if let Some(leader) = membership.leader_url {
                    forward_task_configs(&cluster.peers, &leader, &name, &tasks).await
                } else {
                    Err("no leader known yet".to_owned())
                };
                match result {
                    Ok(()) => return,
                    Err(e) => {
                        warn!(connector = %name, error = %e, "cannot hand task configs to the leader; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            error!(connector = %name, "gave up handing task configs to the leader");
        }))
    }

    async fn stop_connector(&mut self, name: &str) {
        let Some(mut running) = self.running.connectors.remove(name) else {
            return;
        };
        if let Some(submitting) = running.submitting.take() {
            submitting.abort();
        }
        if let Some(starting) = running.starting.take() {
            starting.abort();
        }
        if let Some(mut instance) = running.instance.take() {
            // In the background: a slow external system must not hold up the worker.
            let name = name.to_owned();
            tokio::spawn(async move {
                match tokio::time::timeout(CONNECTOR_CALL_TIMEOUT, instance.stop()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(connector = %name, error = %e, "connector stop failed"),
                    Err(_) => warn!(connector = %name, "connector stop timed out"),
                }
            });
        }
    }

    async fn start_task(
        &mut self,
        id: &TaskId,
        props: &Map<String, Json>,
        config: &Map<String, Json>,
        paused: bool,
    ) {
        let mut running = RunningTask {
            config: config.clone(),
            run: None,
        };
        let status = if paused {
            self.cluster.status_of(RunState::Paused, None)
        } else {
            let spawned = self.spawn_task(id, props, config);
            self.cluster.metrics.task_start(spawned.is_err());
            match spawned {
                Ok(run) => {
                    running.run = Some(run);
                    self.cluster.status_of(RunState::Running, None)
                }
                Err(e) => {
                    error!(task = %id, error = %e, "task failed to start");
                    self.cluster.status_of(RunState::Failed, Some(e))
                }
            }
        };
        self.running.tasks.insert(id.clone(), running);
        if let Err(e) = self.cluster.status.put_task(id, status).await {
            warn!(task = %id, error = %e, "cannot write task status");
        }
    }

    fn spawn_task(
        &self,
        id: &TaskId,
        props: &Map<String, Json>,
        config: &Map<String, Json>,
    ) -> Result<(CancellationToken, JoinHandle<()>), String> {
        let pipeline = self.pipeline(&id.connector, props)?;
        let cancel = CancellationToken::new();
        // Topics the task uses go to the status topic (active topics), written off the task's path.
        let (topic_tx, mut topic_rx) = mpsc::unbounded_channel::<String>();
        let status = self.cluster.status.clone();
        let (connector, task) = (id.connector.clone(), id.task);
        tokio::spawn(async move {
            while let Some(topic) = topic_rx.recv().await {
                if let Err(e) = status.put_topic(&connector, &topic, task).await {
                    warn!(%connector, %topic, error = %e, "cannot record an active topic");
                }
            }
        });
        let report: TopicReport = Arc::new(move |topic: &str| {
            let _ = topic_tx.send(topic.to_owned());
        });
        // Task configs hold `${...}` placeholders as the user wrote them; resolved only here.
        let mut resolved = Json::Object(config.clone());
        let problems = resolve_providers_with(&mut resolved, &self.cluster.worker.config_providers);
        if !problems.is_empty() {
            return Err(problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "));
        }
        let resolved = match resolved {
            Json::Object(map) => map,
            _ => Map::new(),
        };
        let metrics = self.cluster.metrics.task(id);
        let source = matches!(pipeline.plugin, sluice_connector_api::Plugin::Source(_));
        // Builds the task's loop; again for each automatic restart.
        let build = {
            let (cluster, cancel, metrics) =
                (self.cluster.clone(), cancel.clone(), metrics.clone());
            let task = id.task;
            // A plugin that panics while its task is made (its `task()`, a WASM instantiation)
            // fails this task with the panic's message, never the herder or the restart loop.
            move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    task_run(
                        &cluster.worker,
                        &pipeline,
                        task,
                        ConnectorConfig(resolved.clone()),
                        &cluster.offsets,
                        TaskHooks {
                            topics: Some(report.clone()),
                            metrics: metrics.clone(),
                        },
                        cancel.clone(),
                    )
                    .map_err(|e| e.to_string())
                }))
                .unwrap_or_else(|panic| {
                    Err(format!(
                        "the task panicked while it was built: {}",
                        panic_message(panic.as_ref())
                    ))
                })
            }
        };
        let first = build()?;
        let cluster = self.cluster.clone();
        let task = id.clone();
        let stop = cancel.clone();
        let span = info_span!("task", connector = %id.connector, task = id.task);
        let handle = tokio::spawn(
            async move {
                let policy = cluster.worker.task_restart.clone();
                let mut run = first;
                // Automatic restarts since the task last ran for `reset_after`.
                let mut in_a_row = 0u32;
                loop {
                    let began = std::time::Instant::now();
                    let error = match run_task(&cluster, source, run).await {
                        Ok(()) => {
                            info!("task stopped");
                            return;
                        }
                        Err(e) => e,
                    };
                    error!(error = %error, "task failed");
                    if began.elapsed() >= Duration::from_millis(policy.reset_after) {
                        in_a_row = 0;
                    }
                    let restart = policy.enabled
                        && error.is_restartable()
                        && in_a_row < policy.max_restarts
                        && !stop.is_cancelled();
                    if !restart {
                        let mut trace = error.to_string();
                        if policy.enabled && error.is_restartable() && in_a_row > 0 {
                            trace.push_str(&format!(
                                "\n(gave up after {in_a_row} automatic restarts in a row: task_restart.max_restarts)"
                            ));
                        }
                        cluster.put_task_state(&task, RunState::Failed, Some(trace), &metrics).await;
                        return;
                    }
                    in_a_row += 1;
                    let delay = policy.backoff(in_a_row);
                    metrics
                        .restart_pending
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    let trace = format!(
                        "{error}\n(automatic restart {in_a_row} of at most {} in {delay:?})",
                        policy.max_restarts
                    );
                    cluster.put_task_state(&task, RunState::Failed, Some(trace), &metrics).await;
                    warn!(restart = in_a_row, ?delay, "restarting the failed task after a backoff");
                    let waited = tokio::select! {
                        _ = stop.cancelled() => false,
                        _ = tokio::time::sleep(delay) => true,
                    };
                    metrics
                        .restart_pending
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    if !waited {
                        return;
                    }
                    metrics.restarts.inc();
                    let rebuilt = build();
                    cluster.metrics.task_start(rebuilt.is_err());
                    match rebuilt {
                        Ok(next) => {
                            run = next;
                            cluster.put_task_state(&task, RunState::Running, None, &metrics).await;
                        }
                        Err(e) => {
                            error!(error = %e, "task failed to start");
                            cluster.put_task_state(&task, RunState::Failed, Some(e), &metrics).await;
                            return;
                        }
                    }
                }
            }
            .instrument(span),
        );
        Ok((cancel, handle))
    }

    async fn stop_task(&mut self, id: &TaskId) {
        let Some(running) = self.running.tasks.remove(id) else {
            return;
        };
        if let Some((cancel, mut handle)) = running.run {
            cancel.cancel();
            let timeout = Duration::from_millis(self.cluster.worker.shutdown_timeout);
            match tokio::time::timeout(timeout, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    error!(task = %id, error = %e, "the task's supervising loop ended abnormally")
                }
                Err(_) => {
                    warn!(task = %id, "task did not stop within the shutdown timeout; abandoning it (uncommitted records are delivered again)");
                    handle.abort();
                }
            }
        }
    }

    async fn stop_all(&mut self) {
        let tasks: Vec<TaskId> = self.running.tasks.keys().cloned().collect();
        let stops = tasks.iter().filter_map(|id| {
            let running = self.running.tasks.get_mut(id)?;
            running.run.take()
        });
        let timeout = Duration::from_millis(self.cluster.worker.shutdown_timeout);
        let waits: Vec<_> = stops
            .map(|(cancel, handle)| {
                cancel.cancel();
                async move {
                    let abort = handle.abort_handle();
                    if tokio::time::timeout(timeout, handle).await.is_err() {
                        abort.abort();
                    }
                }
            })
            .collect();
        futures::future::join_all(waits).await;
        let names: Vec<String> = self.running.connectors.keys().cloned().collect();
        for name in &names {
            self.stop_connector(name).await;
        }
        self.running.tasks.clear();
        self.publish_owned();
        // States written side by side: a worker cut off from Kafka must not wait for each.
        let status = self.cluster.status_of(RunState::Unassigned, None);
        let store = &self.cluster.status;
        let tasks = tasks.iter().map(|id| {
            let status = status.clone();
            async move {
                if let Err(e) = store.put_task(id, status).await {
                    warn!(task = %id, error = %e, "cannot write task status");
                }
            }
        });
        let connectors = names.iter().map(|name| {
            let status = status.clone();
            async move {
                if let Err(e) = store.put_connector(name, status).await {
                    warn!(connector = %name, error = %e, "cannot write connector status");
                }
            }
        });
        futures::future::join(
            futures::future::join_all(tasks),
            futures::future::join_all(connectors),
        )
        .await;
    }
}

/// Task configs with every value that came from a `${...}` reference of the connector config
/// (at any depth: a header in a map, part of a URL) put back as the reference, so the config
/// topic (and GET .../tasks) never holds resolved secrets; tasks resolve them when they start.
fn with_placeholders(
    props: &Map<String, Json>,
    tasks: Vec<ConnectorConfig>,
    policy: &crate::config::ProviderPolicy,
) -> Vec<ConnectorConfig> {
    let mut resolved = Json::Object(props.clone());
    let (_, substitutions) = crate::config::resolve_recording(&mut resolved, policy);
    tasks
        .into_iter()
        .map(|config| {
            let mut value = Json::Object(config.0);
            crate::config::restore_references(&mut value, &substitutions);
            match value {
                Json::Object(map) => ConnectorConfig(map),
                _ => ConnectorConfig(Map::new()),
            }
        })
        .collect()
}

/// Runs a task's loop; a source first reads the stored offsets to their end. A panic in the
/// loop (a connector's or the runtime's own bug) ends it like an error, with the panic's message:
/// it is reported and restarted by policy instead of leaving the task RUNNING forever.
async fn run_task(cluster: &Cluster, source: bool, run: TaskRun) -> Result<(), TaskError> {
    // A source must start from the newest stored offsets (an offsets change made through
    // another worker included), or it could skip or repeat data.
    if source {
        cluster.offsets.read_to_end().await?;
    }
    info!("task starting");
    std::panic::AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(TaskError::Panicked(panic_message(panic.as_ref()))))
}

/// The message a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Sends task configs to the leader's internal endpoint, signed like any worker-to-worker call.
async fn forward_task_configs(
    peers: &crate::rest::Peers,
    leader: &str,
    connector: &str,
    tasks: &[Map<String, Json>],
) -> Result<(), String> {
    let body = serde_json::to_vec(tasks).map_err(|e| e.to_string())?;
    let response = peers
        .request(
            reqwest::Method::POST,
            leader,
            &format!("/connectors/{connector}/tasks?forward=false"),
            body,
        )
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "leader answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        ))
    }
}
