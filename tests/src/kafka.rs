//! Kafka clients for tests: create topics, produce, read a whole topic back.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::bootstrap;

fn client() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap())
        .set("log_level", "3");
    config
}

/// Creates a topic with `partitions` partitions.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]).await;
}

/// Creates a topic with `partitions` partitions and topic configs such as
/// `("cleanup.policy", "compact")`.
pub async fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client().create().expect("admin client");
    let topic = configs.iter().fold(
        NewTopic::new(name, partitions, TopicReplication::Fixed(1)),
        |topic, (key, value)| topic.set(key, value),
    );
    let results = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// An idempotent producer for test data.
pub fn producer() -> FutureProducer {
    client()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces `values` (keyed by their index) and waits for every acknowledgement.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    values: impl IntoIterator<Item = (String, String)>,
) {
    let mut pending = Vec::new();
    for (key, value) in values {
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| e)
            .expect("enqueue");
        pending.push(delivery);
    }
    for delivery in pending {
        delivery
            .await
            .expect("delivery future")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the epoch, as the broker reports it.
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Read {
    pub fn value_text(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

/// A partition's low and high watermarks. A loaded machine (the whole suite on two cores) can let
/// one request time out: asked again a few times before the test fails.
fn watermarks(consumer: &BaseConsumer, topic: &str, partition: i32) -> (i64, i64) {
    let mut attempt = 0;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(marks) => return marks,
            Err(e) if attempt < 5 => {
                eprintln!("watermarks of {topic}/{partition}: {e}; asking again");
                attempt += 1;
            }
            Err(e) => panic!("watermarks of {topic}/{partition}: {e}"),
        }
    }
}

/// How long a reader waits for the next record before it reports the topic stuck.
const READ_STALL: Duration = Duration::from_secs(120);

/// Waits until `check` passes while `topics` keep growing: it fails only when their ends stopped
/// moving for `stall` with `check` still failing. Crash tests on a loaded machine are slow, not
/// stuck, and a fixed deadline would fail them for the wrong reason. Blocking.
pub fn wait_while_growing<T>(
    what: &str,
    topics: &[&str],
    stall: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let mut ends: Vec<HashMap<i32, i64>> = Vec::new();
    let mut moved = std::time::Instant::now();
    loop {
        if let Some(done) = check() {
            return done;
        }
        let now: Vec<HashMap<i32, i64>> = topics.iter().map(|t| end_offsets(t)).collect();
        if now != ends {
            ends = now;
            moved = std::time::Instant::now();
        }
        assert!(
            moved.elapsed() < stall,
            "{what}: {topics:?} stopped growing for {stall:?} (ends {ends:?}) before it"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Reads every record of `topic` up to its current end, all partitions, in offset order per
/// partition. Blocking; call from a blocking context.
pub fn read_all(topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = client()
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut ends = HashMap::new();
    let mut list = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = watermarks(&consumer, topic, p);
        if high > low {
            ends.insert(p, high);
            list.add_partition_offset(topic, p, Offset::Offset(low))
                .expect("add partition");
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&list).expect("assign");
    let mut remaining = ends.len();
    let mut done: HashMap<i32, bool> = HashMap::new();
    // A loaded machine reads slowly: give up only when nothing arrives for this long.
    let mut last_read = std::time::Instant::now();
    while remaining > 0 {
        assert!(
            last_read.elapsed() < READ_STALL,
            "reading {topic} stalled for {READ_STALL:?} short of its end ({} records read)",
            out.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        last_read = std::time::Instant::now();
        let message = message.expect("consume");
        let (p, offset) = (message.partition(), message.offset());
        out.push(Read {
            partition: p,
            offset,
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            timestamp: message.timestamp().to_millis(),
            headers: message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        });
        if offset + 1 >= ends[&p] && !done.get(&p).copied().unwrap_or(false) {
            done.insert(p, true);
            remaining -= 1;
        }
    }
    out
}

/// The end (high watermark) of every partition of `topic`. Blocking.
pub fn end_offsets(topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = client().create().expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (_, high) = watermarks(&consumer, topic, p.id());
            (p.id(), high)
        })
        .collect()
}

/// The offsets consumer group `group` has committed for `topic` (partitions without a commit
/// are left out). Blocking.
pub fn committed(group: &str, topic: &str, partitions: i32) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(10)) else {
        return HashMap::new();
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Whether group `group` has committed the end of every partition of `topic`. Blocking.
pub fn caught_up(group: &str, topic: &str) -> bool {
    let ends = end_offsets(topic);
    let committed = committed(group, topic, ends.len() as i32);
    ends.iter()
        .all(|(p, end)| *end == 0 || committed.get(p) == Some(end))
}
