//! Deleting a consumer group's committed offsets for some partitions (OffsetDelete, KIP-496),
//! which rdkafka does not offer: how a sink connector's offset for one partition is reset.

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, GroupId, OffsetDeleteRequest, TopicName,
    offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
};
use kafka_protocol::protocol::StrBytes;

use super::ClusterError;
use super::member::find_coordinator;
use super::security::KafkaSecurity;

/// Deletes `group`'s committed offsets of `partitions` (topic, partition). The group must have
/// no members subscribed to those topics (a stopped sink connector's group has none).
pub async fn delete_committed_offsets(
    bootstrap_servers: &str,
    security: &KafkaSecurity,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<(), ClusterError> {
    let mut conn = find_coordinator(bootstrap_servers, group, "sluice-offsets", security).await?;
    let versions = conn.send(&ApiVersionsRequest::default(), 0).await?;
    if !versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::OffsetDelete as i16)
    {
        return Err(ClusterError::Unsupported(
            "the broker does not support OffsetDelete (KIP-496), so one partition's committed \
             offset cannot be reset; DELETE .../offsets resets them all"
                .into(),
        ));
    }
    let mut topics: Vec<OffsetDeleteRequestTopic> = Vec::new();
    for (topic, partition) in partitions {
        let entry = OffsetDeleteRequestPartition::default().with_partition_index(*partition);
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.partitions.push(entry),
            None => topics.push(
                OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(topics);
    let response = tokio::time::timeout(std::time::Duration::from_secs(15), conn.send(&request, 0))
        .await
        .map_err(|_| ClusterError::Protocol("OffsetDelete timed out".into()))??;
    if response.error_code != 0 {
        return Err(ClusterError::Broker {
            request: "OffsetDelete",
            code: response.error_code,
        });
    }
    for topic in &response.topics {
        for p in &topic.partitions {
            if p.error_code != 0 {
                return Err(ClusterError::Protocol(format!(
                    "OffsetDelete refused for {}-{} with Kafka error code {}",
                    topic.name.0.as_str(),
                    p.partition_index,
                    p.error_code
                )));
            }
        }
    }
    Ok(())
}
