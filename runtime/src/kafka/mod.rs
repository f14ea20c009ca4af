//! rdkafka client construction. Settings from the worker's `kafka:` block pass through to
//! librdkafka; the few settings Sluice's delivery guarantees rest on are set last so they cannot
//! be overridden by accident.

mod consumer;
pub(crate) mod group_offsets;
pub(crate) mod preflight;

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use serde_json::Value as Json;
use tracing::warn;

use crate::config::WorkerConfig;
use crate::task::{AckContext, AckWindow, SourceProducer};

pub(crate) use consumer::{RebalanceEvent, SinkConsumer, release, sink_consumer};
pub use preflight::SecurityFailure;

/// Producer settings the no-loss guarantee depends on.
const PRODUCER_GUARANTEES: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];
/// Consumer settings the no-loss guarantee depends on: offsets are committed by the task loop only.
const CONSUMER_GUARANTEES: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
];

fn base_config(
    worker: &WorkerConfig,
    specific: &BTreeMap<String, Json>,
    client_id: &str,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &worker.bootstrap_servers);
    config.set("client.id", client_id);
    for (key, value) in worker.client_settings(specific) {
        config.set(key, value);
    }
    config
}

fn enforce(config: &mut ClientConfig, guarantees: &[(&str, &str)]) {
    for (key, required) in guarantees {
        if let Some(given) = config.get(key).filter(|given| given != required) {
            warn!(
                setting = key,
                given, required, "ignoring a kafka setting that would break delivery guarantees"
            );
        }
        config.set(*key, *required);
    }
}

/// Settings of an idempotent producer with `acks=all`, for a source task or a dead-letter queue.
fn producer_config(worker: &WorkerConfig, client_id: &str) -> ClientConfig {
    let mut config = base_config(worker, &worker.producer, client_id);
    if config.get("linger.ms").is_none() {
        config.set("linger.ms", "5");
    }
    // Java's partitioner (murmur2 of the key bytes), so a key lands in the partition Kafka
    // Connect and every Java producer would choose, e.g. for co-partitioned joins downstream.
    if config.get("partitioner").is_none() {
        config.set("partitioner", "murmur2_random");
    }
    enforce(&mut config, PRODUCER_GUARANTEES);
    config
}

/// The producer of one source task: each delivery settles its record in `window`.
pub(crate) fn source_producer(
    worker: &WorkerConfig,
    client_id: &str,
    window: Arc<AckWindow>,
) -> Result<SourceProducer, KafkaError> {
    producer_config(worker, client_id).create_with_context(AckContext { window })
}

/// A producer for dead-letter records, awaited one at a time.
pub(crate) fn dlq_producer(
    worker: &WorkerConfig,
    client_id: &str,
) -> Result<FutureProducer, KafkaError> {
    producer_config(worker, client_id).create()
}
