//! Internal topics of distributed mode: created compacted when missing, refused when an existing
//! one is not compacted (compaction is what keeps the latest config, offset and status per key).
//! `compact,delete` is refused too, as Kafka Connect does: its retention would delete configs and
//! offsets that were never overwritten.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use tracing::info;

use super::StorageError;
use crate::config::WorkerConfig;

/// One internal topic to make sure of.
#[derive(Debug, Clone)]
pub(crate) struct InternalTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
}

pub(crate) async fn ensure_internal_topics(
    worker: &WorkerConfig,
    topics: &[InternalTopic],
) -> Result<(), StorageError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &worker.bootstrap_servers);
    for (key, value) in worker.client_settings(&worker.kafka) {
        config.set(key, value);
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| StorageError::Kafka {
            topic: String::new(),
            source,
        })?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
            .set("cleanup.policy", "compact")
        })
        .collect();
    let created = admin
        .create_topics(new.iter(), &options)
        .await
        .map_err(|source| StorageError::Kafka {
            topic: String::new(),
            source,
        })?;
    for result in created {
        match result {
            Ok(name) => info!(topic = %name, "created internal topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(StorageError::Topic {
                    topic: name,
                    message: format!("cannot be created: {code}"),
                });
            }
        }
    }
    let resources: Vec<ResourceSpecifier<'_>> = topics
        .iter()
        .map(|t| ResourceSpecifier::Topic(&t.name))
        .collect();
    let described = admin
        .describe_configs(resources.iter(), &options)
        .await
        .map_err(|source| StorageError::Kafka {
            topic: String::new(),
            source,
        })?;
    for (topic, result) in topics.iter().zip(described) {
        let resource = result.map_err(|code| StorageError::Topic {
            topic: topic.name.clone(),
            message: format!("cannot describe its configuration: {code}"),
        })?;
        let policy = resource
            .get("cleanup.policy")
            .and_then(|entry| entry.value.clone())
            .unwrap_or_default();
        if let Some(problem) = policy_problem(&policy) {
            return Err(StorageError::Topic {
                topic: topic.name.clone(),
                message: format!(
                    "exists with cleanup.policy {problem}; Sluice's internal topics must be compacted \
                     with cleanup.policy=compact exactly, or old configs and offsets would be deleted. \
                     Fix it with kafka-configs --alter --add-config cleanup.policy=compact, or choose \
                     another topic name"
                ),
            });
        }
    }
    Ok(())
}

/// What is wrong with an internal topic's `cleanup.policy`, if anything: only `compact` alone
/// keeps every key's latest record for good.
fn policy_problem(policy: &str) -> Option<String> {
    let policies: Vec<&str> = policy
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    match policies.as_slice() {
        [] => Some("unset (the broker's default, delete)".to_owned()),
        ["compact"] => None,
        _ => Some(format!("={policy}")),
    }
}

#[cfg(test)]
mod tests {
    use super::policy_problem;

    #[test]
    fn only_compact_alone_is_accepted() {
        assert_eq!(policy_problem("compact"), None);
        assert_eq!(policy_problem(" compact "), None);
        assert_eq!(
            policy_problem("compact,delete").as_deref(),
            Some("=compact,delete")
        );
        assert_eq!(
            policy_problem("delete,compact").as_deref(),
            Some("=delete,compact")
        );
        assert_eq!(policy_problem("delete").as_deref(), Some("=delete"));
        assert!(policy_problem("").is_some_and(|p| p.contains("unset")));
    }
}
