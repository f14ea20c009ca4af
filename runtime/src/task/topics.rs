//! Which topics a connector has used (Kafka Connect's active topics, KIP-558): each new topic is
//! reported once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Called with a topic the first time a task uses it.
pub(crate) type TopicReport = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
pub(crate) struct TopicTracker {
    seen: Mutex<HashSet<String>>,
    report: Option<TopicReport>,
}

impl TopicTracker {
    pub(crate) fn new(report: Option<TopicReport>) -> Self {
        Self {
            seen: Mutex::default(),
            report,
        }
    }

    pub(crate) fn note(&self, topic: &str) {
        let Some(report) = &self.report else {
            return;
        };
        let new = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            !seen.contains(topic) && seen.insert(topic.to_owned())
        };
        if new {
            report(topic);
        }
    }
}
