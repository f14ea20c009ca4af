use std::sync::mpsc;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use sluice_connector_api::TopicPartition;

use super::{CONSUMER_GUARANTEES, base_config, enforce};
use crate::config::WorkerConfig;

/// Partitions gained or lost in a rebalance, reported to the sink loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RebalanceEvent {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// Forwards rebalances to the sink loop (rdkafka calls these on its poll path, where the task's
/// async methods cannot run).
pub(crate) struct RebalanceForwarder {
    events: mpsc::Sender<RebalanceEvent>,
    /// Where librdkafka's periodic statistics put the task's consumer lag.
    lag: Gauge,
}

fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

impl ClientContext for RebalanceForwarder {
    fn stats(&self, statistics: Statistics) {
        // Partitions this consumer fetches (`none`: not assigned); -1 while unknown.
        let lag: i64 = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|(partition, p)| **partition >= 0 && p.fetch_state != "none")
            .map(|(_, p)| p.consumer_lag.max(0))
            .sum();
        self.lag.set(lag);
    }
}

impl ConsumerContext for RebalanceForwarder {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            // The receiver lives as long as the sink loop; a send after it is gone has no reader.
            let _ = self.events.send(RebalanceEvent::Revoked(partitions(list)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let _ = self.events.send(RebalanceEvent::Assigned(partitions(list)));
        }
    }
}

pub(crate) type SinkConsumer = StreamConsumer<RebalanceForwarder>;

/// A consumer in group `connect-<connector>` with manual commits and cooperative rebalancing.
pub(crate) fn sink_consumer(
    worker: &WorkerConfig,
    connector: &str,
    client_id: &str,
    lag: Gauge,
) -> Result<(SinkConsumer, mpsc::Receiver<RebalanceEvent>), KafkaError> {
    let mut config = base_config(worker, &worker.consumer, client_id);
    config.set("group.id", format!("connect-{connector}"));
    for (key, default) in [
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        // librdkafka pauses fetching for this long whenever its prefetch queue is full, which
        // happens each time a sink's `put` is slow for a moment (an upload): at the default
        // of 1 s the task then runs dry and waits (measured: S3 archive rate x1.8 at 10 ms).
        ("fetch.queue.backoff.ms", "10"),
        // For the lag metric.
        ("statistics.interval.ms", "5000"),
    ] {
        if config.get(key).is_none() {
            config.set(key, default);
        }
    }
    enforce(&mut config, CONSUMER_GUARANTEES);
    let (tx, rx) = mpsc::channel();
    let consumer = config.create_with_context(RebalanceForwarder { events: tx, lag })?;
    Ok((consumer, rx))
}
