//! The config topic (one partition, compacted): connector configs, task configs, target states and
//! restart requests, in Kafka Connect's key layout. Only the leader writes; every worker reads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::StorageError;
use super::log::{Apply, KafkaLog, Log, LogRecord, MemoryLog};
use crate::config::WorkerConfig;

/// What a connector should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetState {
    #[default]
    Started,
    Paused,
    Stopped,
}

/// A restart asked for through the API, applied by whichever worker owns the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartRequest {
    pub connector: String,
    pub include_tasks: bool,
    pub only_failed: bool,
    /// Restart just this task.
    pub task: Option<u32>,
    /// The config topic offset it was written at; workers apply each once.
    pub offset: i64,
}

/// The cluster's configuration as read from the config topic.
#[derive(Debug, Clone, Default)]
pub struct ConfigState {
    /// Next offset to read.
    pub offset: i64,
    /// Connector configs as submitted (Kafka Connect's flat form).
    pub connectors: BTreeMap<String, Map<String, Json>>,
    pub targets: BTreeMap<String, TargetState>,
    /// Committed task configs per connector.
    pub tasks: BTreeMap<String, Vec<Map<String, Json>>>,
    pending: BTreeMap<String, BTreeMap<u32, Map<String, Json>>>,
    /// Recent restart requests, oldest first.
    pub restarts: Vec<RestartRequest>,
}

impl ConfigState {
    pub fn target(&self, connector: &str) -> TargetState {
        self.targets.get(connector).copied().unwrap_or_default()
    }

    pub fn task_count(&self, connector: &str) -> u32 {
        self.tasks.get(connector).map_or(0, |t| t.len() as u32)
    }

    /// How many `task-<connector>-<n>` keys may hold a config: the committed tasks and any
    /// written but not (yet) committed.
    fn task_slots(&self, connector: &str) -> u32 {
        let pending = self
            .pending
            .get(connector)
            .and_then(|p| p.keys().next_back())
            .map_or(0, |last| last + 1);
        self.task_count(connector).max(pending)
    }

    fn apply(&mut self, key: &str, value: Option<&[u8]>, offset: i64) {
        self.offset = offset + 1;
        let value: Option<Json> = match value.map(serde_json::from_slice) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                warn!(key, offset, error = %e, "skipping an unreadable config record");
                return;
            }
        };
        if let Some(name) = key.strip_prefix("connector-") {
            match value
                .as_ref()
                .and_then(|v| v.get("properties"))
                .and_then(Json::as_object)
            {
                Some(props) => {
                    self.connectors.insert(name.to_owned(), props.clone());
                }
                None => {
                    self.connectors.remove(name);
                    self.tasks.remove(name);
                    self.pending.remove(name);
                    self.targets.remove(name);
                }
            }
        } else if let Some(name) = key.strip_prefix("target-state-") {
            match value
                .as_ref()
                .and_then(|v| v.get("state"))
                .and_then(|s| serde_json::from_value(s.clone()).ok())
            {
                Some(state) => {
                    self.targets.insert(name.to_owned(), state);
                }
                None => {
                    self.targets.remove(name);
                }
            }
        } else if let Some(rest) = key.strip_prefix("task-") {
            let Some((name, id)) = rest.rsplit_once('-') else {
                return;
            };
            let Ok(id) = id.parse::<u32>() else {
                return;
            };
            // A tombstone (the connector was deleted) drops a config not committed yet.
            let Some(props) = value
                .as_ref()
                .and_then(|v| v.get("properties"))
                .and_then(Json::as_object)
            else {
                if let Some(pending) = self.pending.get_mut(name) {
                    pending.remove(&id);
                }
                return;
            };
            self.pending
                .entry(name.to_owned())
                .or_default()
                .insert(id, props.clone());
        } else if let Some(name) = key.strip_prefix("commit-") {
            if value.is_none() {
                // The connector was deleted: its committed tasks go with it.
                self.tasks.remove(name);
                return;
            }
            let Some(count) = value
                .as_ref()
                .and_then(|v| v.get("tasks"))
                .and_then(Json::as_u64)
            else {
                return;
            };
            let mut pending = self.pending.remove(name).unwrap_or_default();
            let tasks: Option<Vec<_>> = (0..count as u32).map(|i| pending.remove(&i)).collect();
            match tasks {
                Some(tasks) => {
                    self.tasks.insert(name.to_owned(), tasks);
                }
                None => warn!(
                    connector = name,
                    offset, "task commit without all task configs; ignored"
                ),
            }
        } else if let Some(name) = key.strip_prefix("restart-connector-") {
            let flag = |f: &str| {
                value
                    .as_ref()
                    .and_then(|v| v.get(f))
                    .and_then(Json::as_bool)
                    .unwrap_or(false)
            };
            self.restarts.push(RestartRequest {
                connector: name.to_owned(),
                include_tasks: flag("include-tasks"),
                only_failed: flag("only-failed"),
                task: value
                    .as_ref()
                    .and_then(|v| v.get("task"))
                    .and_then(Json::as_u64)
                    .map(|t| t as u32),
                offset,
            });
            if self.restarts.len() > 1000 {
                self.restarts.drain(..500);
            }
        }
    }
}

/// Reads and writes the config topic.
#[derive(Clone)]
pub struct ConfigStore {
    log: Arc<dyn Log>,
    state: Arc<Mutex<ConfigState>>,
    changes: watch::Receiver<i64>,
}

impl ConfigStore {
    pub(crate) async fn start(
        worker: &WorkerConfig,
        topic: &str,
        client_id: &str,
        cancel: CancellationToken,
    ) -> Result<Self, StorageError> {
        let (state, changes, apply) = Self::parts();
        let log = KafkaLog::start(worker, topic, client_id, apply, cancel).await?;
        // Task configs and their commit record must stay in order: one partition only.
        if log.partition_count() != 1 {
            return Err(StorageError::Topic {
                topic: topic.to_owned(),
                message: format!(
                    "has {} partitions; the config topic must have exactly one, or task configs \
                     and their commit records could be read out of order",
                    log.partition_count()
                ),
            });
        }
        Ok(Self {
            log: Arc::new(log),
            state,
            changes,
        })
    }

    /// A store kept in memory only (standalone mode).
    pub(crate) fn memory() -> Self {
        let (state, changes, apply) = Self::parts();
        Self {
            log: Arc::new(MemoryLog::new(apply)),
            state,
            changes,
        }
    }

    fn parts() -> (Arc<Mutex<ConfigState>>, watch::Receiver<i64>, Apply) {
        let state = Arc::new(Mutex::new(ConfigState::default()));
        let (tx, changes) = watch::channel(0);
        let applied = state.clone();
        let apply = Box::new(move |r: LogRecord<'_>| {
            let key = r.key.map(String::from_utf8_lossy).unwrap_or_default();
            let mut state = applied.lock().unwrap_or_else(|e| e.into_inner());
            state.apply(&key, r.value, r.offset);
            tx.send_replace(state.offset);
        });
        (state, changes, apply)
    }

    pub fn snapshot(&self) -> ConfigState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fires whenever a record was applied.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.changes.clone()
    }

    pub async fn read_to_end(&self) -> Result<i64, StorageError> {
        self.log.read_to_end().await?;
        Ok(self.snapshot().offset)
    }

    async fn write(&self, key: &str, value: Option<Json>) -> Result<(), StorageError> {
        let bytes = value.map(|v| v.to_string().into_bytes());
        self.log.append(key, bytes.as_deref(), true).await
    }

    pub async fn put_connector(
        &self,
        name: &str,
        props: &Map<String, Json>,
    ) -> Result<(), StorageError> {
        self.write(
            &format!("connector-{name}"),
            Some(json!({ "properties": props })),
        )
        .await
    }

    /// Deletes a connector: tombstones for its task configs and their commit record first, then
    /// for its target state and config. Without the task tombstones a compacted topic would keep
    /// the old `task-*`/`commit-*` records after the connector's own tombstone is gone, and a
    /// connector created again under the same name would start with the old task configs on a
    /// worker that reads the topic from the start. The config record goes last, so a delete cut
    /// short leaves the connector in place (its tasks are generated again) and can be repeated.
    pub async fn delete_connector(&self, name: &str) -> Result<(), StorageError> {
        for task in 0..self.snapshot().task_slots(name) {
            self.write(&format!("task-{name}-{task}"), None).await?;
        }
        self.write(&format!("commit-{name}"), None).await?;
        self.write(&format!("target-state-{name}"), None).await?;
        self.write(&format!("connector-{name}"), None).await
    }

    pub async fn put_target(&self, name: &str, state: TargetState) -> Result<(), StorageError> {
        self.write(
            &format!("target-state-{name}"),
            Some(json!({ "state": state })),
        )
        .await
    }

    /// Writes a connector's task configs, then the commit record that makes them visible.
    pub async fn put_tasks(
        &self,
        name: &str,
        tasks: &[Map<String, Json>],
    ) -> Result<(), StorageError> {
        for (i, props) in tasks.iter().enumerate() {
            self.write(
                &format!("task-{name}-{i}"),
                Some(json!({ "properties": props })),
            )
            .await?;
        }
        self.write(
            &format!("commit-{name}"),
            Some(json!({ "tasks": tasks.len() })),
        )
        .await
    }

    pub async fn request_restart(
        &self,
        name: &str,
        include_tasks: bool,
        only_failed: bool,
    ) -> Result<(), StorageError> {
        self.write(
            &format!("restart-connector-{name}"),
            Some(json!({ "include-tasks": include_tasks, "only-failed": only_failed })),
        )
        .await
    }

    pub async fn request_task_restart(&self, name: &str, task: u32) -> Result<(), StorageError> {
        self.write(
            &format!("restart-connector-{name}"),
            Some(json!({ "task": task })),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(state: &mut ConfigState, key: &str, value: Option<Json>) {
        let offset = state.offset;
        let bytes = value.map(|v| v.to_string().into_bytes());
        state.apply(key, bytes.as_deref(), offset);
    }

    #[test]
    fn task_configs_become_visible_on_commit_and_vanish_with_the_connector() {
        let mut state = ConfigState::default();
        apply(
            &mut state,
            "connector-a",
            Some(json!({"properties": {"connector.class": "datagen"}})),
        );
        apply(
            &mut state,
            "task-a-0",
            Some(json!({"properties": {"x": 1}})),
        );
        apply(
            &mut state,
            "task-a-1",
            Some(json!({"properties": {"x": 2}})),
        );
        assert_eq!(state.task_count("a"), 0);
        apply(&mut state, "commit-a", Some(json!({"tasks": 2})));
        assert_eq!(state.task_count("a"), 2);
        apply(
            &mut state,
            "target-state-a",
            Some(json!({"state": "PAUSED"})),
        );
        assert_eq!(state.target("a"), TargetState::Paused);
        apply(&mut state, "commit-a", Some(json!({"tasks": 3})));
        assert_eq!(state.task_count("a"), 2, "an incomplete commit is ignored");
        apply(&mut state, "connector-a", None);
        assert!(state.connectors.is_empty());
        assert_eq!(state.task_count("a"), 0);
        assert_eq!(state.target("a"), TargetState::Started);
        assert_eq!(state.offset, 7);
    }

    /// A compacted config topic keeps only each key's newest record, in the order they were
    /// written. After a delete and a re-create (not started yet) that is: the task configs and
    /// commit of the deleted connector, then the new connector record.
    #[test]
    fn a_connector_created_again_does_not_inherit_task_configs_once_compacted() {
        let old_tasks = vec![
            ("task-a-0", Some(json!({"properties": {"x": 1}}))),
            ("task-a-1", Some(json!({"properties": {"x": 2}}))),
            ("commit-a", Some(json!({"tasks": 2}))),
        ];
        let recreated = (
            "connector-a",
            Some(json!({"properties": {"connector.class": "datagen"}})),
        );
        // Without task tombstones (before the fix) the old tasks come back with the new config.
        let mut state = ConfigState::default();
        for (key, value) in old_tasks.iter().cloned().chain([recreated.clone()]) {
            apply(&mut state, key, value);
        }
        assert_eq!(state.task_count("a"), 2);

        // A delete writes tombstones for every task key and the commit; compaction keeps those.
        let mut live = ConfigState::default();
        apply(
            &mut live,
            "connector-a",
            Some(json!({"properties": {"connector.class": "datagen"}})),
        );
        for (key, value) in &old_tasks {
            apply(&mut live, key, value.clone());
        }
        assert_eq!(live.task_slots("a"), 2);
        let mut state = ConfigState::default();
        for key in ["task-a-0", "task-a-1", "commit-a"] {
            apply(&mut state, key, None);
        }
        apply(&mut state, recreated.0, recreated.1);
        assert_eq!(state.task_count("a"), 0);
        assert!(state.pending.is_empty());

        // Read in full order the tombstones also drop what they cover.
        let mut state = ConfigState::default();
        for (key, value) in &old_tasks {
            apply(&mut state, key, value.clone());
        }
        apply(
            &mut state,
            "task-a-2",
            Some(json!({"properties": {"x": 3}})),
        );
        assert_eq!(state.task_slots("a"), 3);
        for key in ["task-a-0", "task-a-1", "task-a-2", "commit-a"] {
            apply(&mut state, key, None);
        }
        assert_eq!(state.task_count("a"), 0);
        assert!(state.pending.get("a").is_none_or(BTreeMap::is_empty));
    }
}
