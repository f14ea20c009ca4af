//! Error tolerance and the dead-letter topic: a sink fed malformed records skips them into the
//! DLQ with context headers (tolerance all), or fails without committing past them (none).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_tests::cluster::wait_async;
use sluice_tests::{Sluice, bootstrap, free_port, kafka, unique, wait_for, write_worker};

const TOTAL: usize = 10_000;
const BAD: usize = 37;

/// Produces TOTAL records, BAD of them not JSON; returns the bad values.
async fn produce_with_bad(topic: &str) -> BTreeSet<String> {
    kafka::create_topic(topic, 3).await;
    let bad_at: BTreeSet<usize> = (0..BAD).map(|i| 11 + i * 269).collect();
    let records: Vec<(String, String)> = (0..TOTAL)
        .map(|i| {
            let value = if bad_at.contains(&i) {
                format!("{{not json #{i}")
            } else {
                format!("{{\"n\":{i}}}")
            };
            (format!("k{i}"), value)
        })
        .collect();
    kafka::produce(&kafka::producer(), topic, records).await;
    bad_at.iter().map(|i| format!("{{not json #{i}")).collect()
}

fn pipeline(dir: &std::path::Path, name: &str, topic: &str, errors: &str) -> std::path::PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(
        &path,
        format!(
            "name: {name}\nconnector: file-sink\nconfig: {{topics: [{topic}], file: {}, format: record}}\n\
             value_converter: {{type: json, schemas: false}}\n{errors}",
            dir.join("out.jsonl").display()
        ),
    )
    .expect("write pipeline");
    path
}

fn lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Every record of a topic with its headers (value, headers by key).
fn read_with_headers(topic: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("dlq-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    let mut remaining = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        remaining += (high - low) as usize;
        list.add_partition_offset(topic, p.id(), Offset::Offset(low))
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < remaining && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((value, headers));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn tolerated_bad_records_go_to_the_dead_letter_topic_with_their_context() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("errors-all");
    let dlq = format!("{topic}-dlq");
    kafka::create_topic(&dlq, 1).await;
    let bad = produce_with_bad(&topic).await;
    let name = format!("{topic}-sink");
    let port = free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let pipeline = pipeline(
        dir.path(),
        &name,
        &topic,
        &format!("errors: {{tolerance: all, dlq_topic: {dlq}, log: true}}\n"),
    );
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for("the good records", Duration::from_secs(180), || {
        (lines(dir.path()).len() >= TOTAL - BAD).then_some(())
    });
    let dead = wait_for("the dead letters", Duration::from_secs(60), || {
        let dead = read_with_headers(&dlq);
        (dead.len() >= BAD).then_some(dead)
    });
    // The task's status counts what it skipped (refreshed every few seconds).
    let status_url = format!("http://127.0.0.1:{port}/connectors/{name}/status");
    let counted = wait_async(
        "the skipped count in the status",
        Duration::from_secs(60),
        || async {
            let status: serde_json::Value =
                reqwest::get(&status_url).await.ok()?.json().await.ok()?;
            let n = status["tasks"][0]["errors"]["records_skipped"].as_u64()?;
            (n >= BAD as u64).then_some(status)
        },
    )
    .await;
    assert_eq!(
        counted["tasks"][0]["errors"]["records_skipped"], BAD as u64,
        "{counted}"
    );
    assert_eq!(counted["tasks"][0]["state"], "RUNNING", "{counted}");
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let written = lines(dir.path());
    assert_eq!(written.len(), TOTAL - BAD);
    let ns: BTreeSet<i64> = written
        .iter()
        .map(|l| l["value"]["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(ns.len(), TOTAL - BAD, "a good record is missing or doubled");
    assert_eq!(dead.len(), BAD, "the DLQ holds exactly the bad records");
    let values: BTreeSet<String> = dead.iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(values, bad);
    // The context headers point at the original record.
    let originals: BTreeMap<String, (i32, i64)> = kafka::read_all(&topic)
        .iter()
        .map(|r| (r.value_text(), (r.partition, r.offset)))
        .collect();
    for (value, headers) in &dead {
        let (partition, offset) = originals[value];
        assert_eq!(headers["__connect.errors.topic"], topic);
        assert_eq!(headers["__connect.errors.partition"], partition.to_string());
        assert_eq!(headers["__connect.errors.offset"], offset.to_string());
        assert_eq!(headers["__connect.errors.connector.name"], name);
        assert_eq!(headers["__connect.errors.task.id"], "0");
        assert_eq!(headers["__connect.errors.stage"], "VALUE_CONVERTER");
        assert!(
            headers["__connect.errors.exception.message"].contains("invalid JSON"),
            "{headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tolerance_a_bad_record_fails_the_task_and_nothing_after_it_is_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("errors-none");
    produce_with_bad(&topic).await;
    let name = format!("{topic}-sink");
    let worker = write_worker(dir.path(), "");
    let pipeline = pipeline(dir.path(), &name, &topic, "");
    let mut sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    assert!(
        !sluice.wait_exit(Duration::from_secs(180)),
        "standalone exits with an error once its only task failed"
    );
    let log = sluice.log_text();
    assert!(
        log.contains("cannot convert the value of") && log.contains("invalid JSON"),
        "{log}"
    );
    // Per partition, the committed offset stops at or before the first bad record.
    let records = kafka::read_all(&topic);
    let mut first_bad: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &records {
        if r.value_text().starts_with("{not json") {
            first_bad.entry(r.partition).or_insert(r.offset);
        }
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("connect-{name}"))
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for p in 0..3 {
        list.add_partition(&topic, p);
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed");
    let mut any = false;
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            any = true;
            assert!(
                o <= first_bad[&e.partition()],
                "partition {} committed {o}, past its first bad record at {}",
                e.partition(),
                first_bad[&e.partition()]
            );
        }
    }
    // Records before the bad one were written and committed: the test saw real progress.
    assert!(any || !lines(dir.path()).is_empty());
}

/// A JSON record (schemas on) whose `amount` is a Decimal of `scale`; `n` says which it is.
fn decimal_record(n: usize, scale: &str) -> String {
    format!(
        r#"{{"schema":{{"type":"struct","fields":[{{"field":"n","type":"int32"}},{{"field":"amount","type":"bytes","name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"{scale}"}}}}]}},"payload":{{"n":{n},"amount":"AJw="}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decimal_with_a_huge_scale_goes_to_the_dlq_or_fails_the_task_naming_the_field() {
    const COUNT: usize = 20;
    const BAD: usize = 7;
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("errors-decimal");
    let dlq = format!("{topic}-dlq");
    kafka::create_topic(&topic, 1).await;
    kafka::create_topic(&dlq, 1).await;
    // Written out in full, scale 2147483647 is two gigabytes of zeros per value.
    let bad = decimal_record(BAD, "2147483647");
    let records: Vec<(String, String)> = (0..COUNT)
        .map(|i| {
            let value = if i == BAD {
                bad.clone()
            } else {
                decimal_record(i, "2")
            };
            (format!("k{i}"), value)
        })
        .collect();
    kafka::produce(&kafka::producer(), &topic, records).await;
    let sink = |name: &str, errors: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {name}\nconnector: file-sink\nconfig: {{topics: [{topic}], file: {}, format: record}}\n\
                 value_converter: {{type: json, schemas: true}}\n{errors}",
                dir.path().join(format!("{name}.jsonl")).display()
            ),
        )
        .expect("write pipeline");
        path
    };
    let written = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };

    // Tolerated: the record goes to the DLQ with the reason, the others are written.
    let tolerant = format!("{topic}-all");
    let worker = write_worker(dir.path(), "");
    let pipeline = sink(
        &tolerant,
        &format!("errors: {{tolerance: all, dlq_topic: {dlq}}}\n"),
    );
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for("the good records", Duration::from_secs(120), || {
        (written(&tolerant).len() >= COUNT - 1).then_some(())
    });
    let dead = wait_for("the dead letter", Duration::from_secs(60), || {
        let dead = read_with_headers(&dlq);
        (!dead.is_empty()).then_some(dead)
    });
    assert!(sluice.terminate(), "sluice did not stop cleanly");
    let ns: BTreeSet<i64> = written(&tolerant)
        .iter()
        .map(|l| l["value"]["n"].as_i64().expect("n"))
        .collect();
    let expected: BTreeSet<i64> = (0..COUNT as i64).filter(|&i| i != BAD as i64).collect();
    assert_eq!(ns, expected);
    assert_eq!(written(&tolerant)[0]["value"]["amount"], "1.56");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (value, headers) = &dead[0];
    assert_eq!(value, &bad);
    assert_eq!(headers["__connect.errors.offset"], BAD.to_string());
    assert_eq!(headers["__connect.errors.stage"], "VALUE_CONVERTER");
    assert!(
        headers["__connect.errors.exception.message"]
            .contains("amount: Decimal scale 2147483647 is out of range"),
        "{headers:?}"
    );

    // Not tolerated: the task fails with the reason, naming the field.
    let strict = format!("{topic}-none");
    let pipeline = sink(&strict, "");
    let mut sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    assert!(
        !sluice.wait_exit(Duration::from_secs(120)),
        "standalone exits with an error once its only task failed"
    );
    let log = sluice.log_text();
    assert!(
        log.contains("amount: Decimal scale 2147483647 is out of range"),
        "{log}"
    );
    let ns: BTreeSet<i64> = written(&strict)
        .iter()
        .map(|l| l["value"]["n"].as_i64().expect("n"))
        .collect();
    assert!(ns.iter().all(|&n| n < BAD as i64), "{ns:?}");
}
