//! The status topic (compacted): the state of every connector and task as last written by the
//! worker running it, plus the topics each connector has used (KIP-558).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::StorageError;
use super::log::{Apply, KafkaLog, Log, LogRecord, MemoryLog};
use crate::cluster::TaskId;
use crate::config::WorkerConfig;

/// A connector's or task's state, as Kafka Connect reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Unassigned,
    Running,
    Paused,
    Stopped,
    Failed,
    Restarting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: RunState,
    pub trace: Option<String>,
    pub worker_id: String,
    pub generation: i32,
    /// Tasks: records skipped under `errors.tolerance: all` so far (dead-lettered when a topic
    /// is set); refreshed every few seconds while the count changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_skipped: Option<u64>,
    /// Tasks: automatic restarts on this worker so far (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
}

/// Whether `new` may replace `current`: a state written by another worker in an older
/// generation (a fenced worker's late write) never replaces a newer owner's.
fn supersedes(new: &Status, current: Option<&Status>) -> bool {
    current.is_none_or(|c| c.worker_id == new.worker_id || new.generation >= c.generation)
}

#[derive(Debug, Default)]
struct StatusState {
    connectors: BTreeMap<String, Status>,
    tasks: BTreeMap<TaskId, Status>,
    topics: BTreeMap<String, BTreeSet<String>>,
}

impl StatusState {
    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        if let Some(name) = key.strip_prefix("status-connector-") {
            match value.map(serde_json::from_slice::<Status>) {
                Some(Ok(status)) => {
                    if supersedes(&status, self.connectors.get(name)) {
                        self.connectors.insert(name.to_owned(), status);
                    }
                }
                None => {
                    self.connectors.remove(name);
                }
                Some(Err(e)) => warn!(key, error = %e, "skipping an unreadable status record"),
            }
        } else if let Some(rest) = key.strip_prefix("status-task-") {
            let Some((name, task)) = rest.rsplit_once('-') else {
                return;
            };
            let Ok(task) = task.parse() else {
                return;
            };
            let id = TaskId::new(name, task);
            match value.map(serde_json::from_slice::<Status>) {
                Some(Ok(status)) => {
                    if supersedes(&status, self.tasks.get(&id)) {
                        self.tasks.insert(id, status);
                    }
                }
                None => {
                    self.tasks.remove(&id);
                }
                Some(Err(e)) => warn!(key, error = %e, "skipping an unreadable status record"),
            }
        } else if key.starts_with("topic-") {
            let Some(Ok(record)) = value.map(serde_json::from_slice::<serde_json::Value>) else {
                // A tombstone: the key alone does not say which connector (names may hold `-`).
                if let Some((topic, connector)) = key
                    .strip_prefix("topic-")
                    .and_then(|k| k.split_once("-connector-"))
                    && let Some(set) = self.topics.get_mut(connector)
                {
                    set.remove(topic);
                }
                return;
            };
            let topic = &record["topic"];
            if let (Some(name), Some(connector)) =
                (topic["name"].as_str(), topic["connector"].as_str())
            {
                self.topics
                    .entry(connector.to_owned())
                    .or_default()
                    .insert(name.to_owned());
            }
        }
    }
}

/// Reads and writes the status topic.
#[derive(Clone)]
pub struct StatusStore {
    log: Arc<dyn Log>,
    state: Arc<Mutex<StatusState>>,
    /// Task status writes go to the topic in the order they change the local state.
    task_writes: Arc<tokio::sync::Mutex<()>>,
}

impl StatusStore {
    pub(crate) async fn start(
        worker: &WorkerConfig,
        topic: &str,
        client_id: &str,
        cancel: CancellationToken,
    ) -> Result<Self, StorageError> {
        let (state, apply) = Self::parts();
        let log = KafkaLog::start(worker, topic, client_id, apply, cancel).await?;
        let store = Self {
            log: Arc::new(log),
            state,
            task_writes: Arc::default(),
        };
        store.log.read_to_end().await?;
        Ok(store)
    }

    /// A store kept in memory only (standalone mode).
    pub(crate) fn memory() -> Self {
        let (state, apply) = Self::parts();
        Self {
            log: Arc::new(MemoryLog::new(apply)),
            state,
            task_writes: Arc::default(),
        }
    }

    fn parts() -> (Arc<Mutex<StatusState>>, Apply) {
        let state = Arc::new(Mutex::new(StatusState::default()));
        let applied = state.clone();
        let apply = Box::new(move |r: LogRecord<'_>| {
            let key = r.key.map(String::from_utf8_lossy).unwrap_or_default();
            applied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .apply(&key, r.value);
        });
        (state, apply)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn connector(&self, name: &str) -> Option<Status> {
        self.lock().connectors.get(name).cloned()
    }

    pub fn tasks(&self, name: &str) -> Vec<(u32, Status)> {
        self.lock()
            .tasks
            .iter()
            .filter(|(id, _)| id.connector == name)
            .map(|(id, s)| (id.task, s.clone()))
            .collect()
    }

    pub fn task(&self, id: &TaskId) -> Option<Status> {
        self.lock().tasks.get(id).cloned()
    }

    pub fn topics(&self, name: &str) -> BTreeSet<String> {
        self.lock().topics.get(name).cloned().unwrap_or_default()
    }

    /// Writes a state; also applied locally at once so this worker's own reads see it.
    pub async fn put_connector(&self, name: &str, status: Status) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&status).unwrap_or_default();
        {
            let mut state = self.lock();
            if !supersedes(&status, state.connectors.get(name)) {
                return Ok(());
            }
            state.connectors.insert(name.to_owned(), status);
        }
        self.log
            .append(&format!("status-connector-{name}"), Some(&bytes), false)
            .await
    }

    pub async fn put_task(&self, id: &TaskId, mut status: Status) -> Result<(), StorageError> {
        let _ordered = self.task_writes.lock().await;
        let bytes = {
            let mut state = self.lock();
            let current = state.tasks.get(id);
            if !supersedes(&status, current) {
                return Ok(());
            }
            // A state change on the same worker keeps the task's error count.
            if let Some(current) = current.filter(|c| c.worker_id == status.worker_id) {
                status.records_skipped = status.records_skipped.or(current.records_skipped);
                status.restarts = status.restarts.or(current.restarts);
            }
            let bytes = serde_json::to_vec(&status).unwrap_or_default();
            state.tasks.insert(id.clone(), status);
            bytes
        };
        self.append_task(id, &bytes).await
    }

    /// Sets the skipped-record count in a task's current status, when `worker_id` wrote it and
    /// the count changed.
    pub async fn put_task_skipped(
        &self,
        id: &TaskId,
        worker_id: &str,
        skipped: u64,
    ) -> Result<(), StorageError> {
        let _ordered = self.task_writes.lock().await;
        let bytes = {
            let mut state = self.lock();
            let Some(status) = state.tasks.get_mut(id) else {
                return Ok(());
            };
            if status.worker_id != worker_id
                || status.state == RunState::Unassigned
                || status.records_skipped.unwrap_or(0) == skipped
            {
                return Ok(());
            }
            status.records_skipped = Some(skipped);
            serde_json::to_vec(&*status).unwrap_or_default()
        };
        self.append_task(id, &bytes).await
    }

    async fn append_task(&self, id: &TaskId, bytes: &[u8]) -> Result<(), StorageError> {
        self.log
            .append(
                &format!("status-task-{}-{}", id.connector, id.task),
                Some(bytes),
                false,
            )
            .await
    }

    pub async fn delete_task(&self, id: &TaskId) -> Result<(), StorageError> {
        let _ordered = self.task_writes.lock().await;
        self.lock().tasks.remove(id);
        self.log
            .append(
                &format!("status-task-{}-{}", id.connector, id.task),
                None,
                false,
            )
            .await
    }

    pub async fn delete_connector(&self, name: &str) -> Result<(), StorageError> {
        let topics = {
            let mut state = self.lock();
            state.connectors.remove(name);
            state.topics.remove(name).unwrap_or_default()
        };
        self.log
            .append(&format!("status-connector-{name}"), None, false)
            .await?;
        for topic in topics {
            self.log
                .append(&format!("topic-{topic}-connector-{name}"), None, false)
                .await?;
        }
        Ok(())
    }

    /// Records that `connector` used `topic` (once; later calls are no-ops).
    pub async fn put_topic(
        &self,
        connector: &str,
        topic: &str,
        task: u32,
    ) -> Result<(), StorageError> {
        let new = self
            .lock()
            .topics
            .entry(connector.to_owned())
            .or_default()
            .insert(topic.to_owned());
        if !new {
            return Ok(());
        }
        let value = json!({"topic": {
            "name": topic,
            "connector": connector,
            "task": task,
            "discoverTimestamp": chrono_millis(),
        }});
        self.log
            .append(
                &format!("topic-{topic}-connector-{connector}"),
                Some(value.to_string().as_bytes()),
                false,
            )
            .await
    }

    /// Forgets the topics `connector` used (KIP-558 reset).
    pub async fn reset_topics(&self, connector: &str) -> Result<(), StorageError> {
        let topics = self.lock().topics.remove(connector).unwrap_or_default();
        for topic in topics {
            self.log
                .append(&format!("topic-{topic}-connector-{connector}"), None, false)
                .await?;
        }
        Ok(())
    }
}

fn chrono_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
