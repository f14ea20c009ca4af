use prometheus_client::metrics::gauge::Gauge;
use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use sluice_connector_api::TopicPartition;
use tokio::sync::mpsc;
use tracing::warn;

use super::{CONSUMER_GUARANTEES, base_config, enforce};
use crate::config::WorkerConfig;

/// Partitions gained or lost in a rebalance, reported to the sink loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RebalanceEvent {
    Assigned(Vec<TopicPartition>),
    /// The partitions stay this task's until the sink loop has closed them and calls
    /// [`release`]: no other member is given them before (Kafka Connect's `onPartitionsRevoked`,
    /// which runs on the task's own thread before the group moves on). `lost`: the group already
    /// gave them away (the session expired), so nothing of them may be committed.
    Revoked {
        partitions: Vec<TopicPartition>,
        lost: bool,
    },
}

/// Forwards rebalances to the sink loop. rdkafka calls these on its poll path, inside the sink
/// loop's `recv`, where the task's async methods cannot run: an assignment is taken at once, a
/// revocation is left pending (librdkafka waits for the unassign call) until the loop released
/// the partitions.
pub(crate) struct RebalanceForwarder {
    events: mpsc::UnboundedSender<RebalanceEvent>,
    /// Where librdkafka's periodic statistics put the task's consumer lag.
    lag: Gauge,
}

fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// Gives revoked partitions back to the group: after this the consumer delivers nothing more of
/// them, and the group may assign them to another member.
pub(crate) fn release<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    partitions: &[TopicPartition],
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => {
            let mut list = TopicPartitionList::new();
            for tp in partitions {
                list.add_partition(&tp.topic, tp.partition);
            }
            consumer.incremental_unassign(&list)
        }
        // Eager: a revocation always takes the whole assignment.
        _ => consumer.unassign(),
    }
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
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        let taken = partitions(list);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(list),
                    _ => consumer.assign(list),
                };
                match assigned {
                    // The receiver lives as long as the sink loop; after it, nobody reads.
                    Ok(()) => {
                        let _ = self.events.send(RebalanceEvent::Assigned(taken));
                    }
                    Err(e) => warn!(error = %e, "taking an assignment failed"),
                }
            }
            revoke => {
                // A failed rebalance drops the assignment, as rdkafka does by default; the group
                // may already have given it away, so nothing of it is committed.
                let failed = revoke != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
                if failed {
                    warn!(error = ?revoke, "rebalance failed; the assignment is dropped");
                }
                let event = RebalanceEvent::Revoked {
                    partitions: taken.clone(),
                    lost: failed || consumer.assignment_lost(),
                };
                // Without a sink loop (stopping), nothing is pending: let them go now.
                if self.events.send(event).is_err()
                    && let Err(e) = release(consumer, &taken)
                {
                    warn!(error = %e, "releasing revoked partitions failed");
                }
            }
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
) -> Result<(SinkConsumer, mpsc::UnboundedReceiver<RebalanceEvent>), KafkaError> {
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
    let (tx, rx) = mpsc::unbounded_channel();
    let consumer = config.create_with_context(RebalanceForwarder { events: tx, lag })?;
    Ok((consumer, rx))
}
