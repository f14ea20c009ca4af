//! Internal topics of distributed mode: created compacted when missing, refused when an existing
//! one is not compacted (compaction is what keeps the latest config, offset and status per key).

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
        if !policy.split(',').any(|p| p.trim() == "compact") {
            let policy = if policy.is_empty() {
                "unset (the broker's default, delete)".to_owned()
            } else {
                format!("={policy}")
            };
            return Err(StorageError::Topic {
                topic: topic.name.clone(),
                message: format!(
                    "exists with cleanup.policy {policy}; Sluice's internal topics must be compacted \
                     (cleanup.policy=compact) or old configs and offsets would be deleted. Fix it with \
                     kafka-configs --alter --add-config cleanup.policy=compact, or choose another topic name"
                ),
            });
        }
    }
    Ok(())
}
