//! What a worker runs and what the group protocol carries: member metadata sent in JoinGroup and
//! the leader's per-member assignment sent back in SyncGroup, both as JSON.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One task of a connector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId {
    pub connector: String,
    pub task: u32,
}

impl TaskId {
    pub fn new(connector: impl Into<String>, task: u32) -> Self {
        Self {
            connector: connector.into(),
            task,
        }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.connector, self.task)
    }
}

/// Connectors and tasks, as owned by a worker or configured in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub connectors: BTreeSet<String>,
    pub tasks: BTreeSet<TaskId>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.connectors.is_empty() && self.tasks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.connectors.len() + self.tasks.len()
    }

    pub fn minus(&self, other: &Work) -> Work {
        Work {
            connectors: self
                .connectors
                .difference(&other.connectors)
                .cloned()
                .collect(),
            tasks: self.tasks.difference(&other.tasks).cloned().collect(),
        }
    }

    pub fn intersect(&self, other: &Work) -> Work {
        Work {
            connectors: self
                .connectors
                .intersection(&other.connectors)
                .cloned()
                .collect(),
            tasks: self.tasks.intersection(&other.tasks).cloned().collect(),
        }
    }

    pub fn extend(&mut self, other: &Work) {
        self.connectors.extend(other.connectors.iter().cloned());
        self.tasks.extend(other.tasks.iter().cloned());
    }
}

/// What a member tells the group when it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMetadata {
    /// The worker's advertised REST URL; also its worker id.
    pub url: String,
    /// How far the worker has read the config topic.
    pub config_offset: i64,
    /// What the worker runs now (incremental cooperative protocol).
    pub owned: Work,
}

/// The leader's answer to one member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAssignment {
    pub leader: String,
    pub leader_url: String,
    /// The config topic offset the assignment was computed at.
    pub config_offset: i64,
    /// Everything the member should run after this round (kept + newly assigned).
    pub assigned: Work,
    /// What the member must stop before rejoining; it moves to another member next round.
    pub revoked: Work,
    /// When non-zero, some departed member's work is held back this long before it is
    /// reassigned; members rejoin after it.
    pub delay_ms: u64,
}

/// The protocol name members advertise in JoinGroup (protocol type `connect`).
pub const PROTOCOL: &str = "sluice-cooperative-v1";
