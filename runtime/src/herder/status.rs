use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A task's state, with Kafka Connect's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Unassigned,
    Running,
    Stopped,
    Failed,
}

/// A task's status; `trace` holds the failure reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    pub connector: String,
    pub task: u32,
    pub state: State,
    pub trace: Option<String>,
}

/// The states of this worker's tasks.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    tasks: Arc<Mutex<BTreeMap<(String, u32), TaskStatus>>>,
}

impl StatusBoard {
    pub fn set(&self, connector: &str, task: u32, state: State, trace: Option<String>) {
        let status = TaskStatus {
            connector: connector.to_owned(),
            task,
            state,
            trace,
        };
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((connector.to_owned(), task), status);
    }

    pub fn all(&self) -> Vec<TaskStatus> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}
