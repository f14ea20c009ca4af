//! Sink connectors' offsets are their consumer group's committed offsets (`connect-<name>`);
//! the offsets API reads and changes them while the connector is stopped.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::base_config;
use crate::config::WorkerConfig;

const TIMEOUT: Duration = Duration::from_secs(15);

fn group_consumer(worker: &WorkerConfig, connector: &str) -> Result<BaseConsumer, KafkaError> {
    let mut config = base_config(
        worker,
        &worker.consumer,
        &format!("sluice-offsets-{connector}"),
    );
    config.set("group.id", format!("connect-{connector}"));
    config.set("enable.auto.commit", "false");
    config.create()
}

/// Committed offsets of the connector's group for every partition of `topics`.
pub(crate) async fn committed(
    worker: &WorkerConfig,
    connector: &str,
    topics: &[String],
) -> Result<Vec<(String, i32, i64)>, KafkaError> {
    let consumer = group_consumer(worker, connector)?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut list = TopicPartitionList::new();
        for topic in &topics {
            let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    list.add_partition(topic, p.id());
                }
            }
        }
        let committed = consumer.committed_offsets(list, TIMEOUT)?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_owned(), e.partition(), o)),
                _ => None,
            })
            .collect())
    })
    .await
    .unwrap_or(Err(KafkaError::Canceled))
}

/// Commits offsets for the connector's (empty) group.
pub(crate) async fn commit(
    worker: &WorkerConfig,
    connector: &str,
    offsets: &[(String, i32, i64)],
) -> Result<(), KafkaError> {
    let consumer = group_consumer(worker, connector)?;
    let mut list = TopicPartitionList::new();
    for (topic, partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

/// Deletes the connector's consumer group, and with it every committed offset.
pub(crate) async fn delete_group(worker: &WorkerConfig, connector: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> =
        base_config(worker, &worker.kafka, "sluice-admin")
            .create()
            .map_err(|e| e.to_string())?;
    let group = format!("connect-{connector}");
    let results = admin
        .delete_groups(
            &[group.as_str()],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((name, code)) => {
                return Err(format!("cannot delete consumer group {name}: {code}"));
            }
        }
    }
    Ok(())
}

/// The Kafka cluster id, as the REST API's root reports it.
pub(crate) async fn cluster_id(worker: &WorkerConfig) -> Option<String> {
    let consumer: BaseConsumer = base_config(worker, &worker.kafka, "sluice-meta")
        .create()
        .ok()?;
    tokio::task::spawn_blocking(move || consumer.client().fetch_cluster_id(TIMEOUT))
        .await
        .ok()
        .flatten()
}
