//! A transform chain in real pipelines: datagen -> (insert, drop a field, route, header) ->
//! topic -> (predicate-guarded filter, extract) -> file, checked on the topics' and file's data.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_tests::{Sluice, bootstrap, kafka, unique, wait_for, write_worker};

const COUNT: u64 = 500;

/// (value text, `source` header) of every record of a topic.
fn read_values_and_header(topic: &str) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .create()
        .expect("consumer");
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut list = TopicPartitionList::new();
    let mut remaining = 0;
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let Ok((low, high)) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))
        else {
            continue;
        };
        remaining += (high - low) as usize;
        list.add_partition_offset(topic, p.id(), Offset::Offset(low))
            .expect("partition");
    }
    if remaining == 0 {
        return Vec::new();
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < remaining && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let header = m.headers().and_then(|hs| {
                hs.iter()
                    .find(|h| h.key == "source")
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            });
            out.push((
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                header,
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transform_chain_reshapes_routes_and_filters_records_in_real_pipelines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("smt");
    let routed = format!("{topic}-routed");
    kafka::create_topic(&routed, 2).await;
    let out = dir.path().join("out.jsonl");
    let worker = write_worker(dir.path(), "");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name: {topic}-gen
connector: datagen
config: {{topic: {topic}, count: {COUNT}}}
value_converter: {{type: json, schemas: false}}
transforms:
  - {{name: tag, type: InsertField$Value, static.field: origin, static.value: sluice}}
  - {{name: slim, type: org.apache.kafka.connect.transforms.ReplaceField$Value, exclude: amount}}
  - {{name: route, type: RegexRouter, regex: "(.*)", replacement: "$1-routed"}}
  - {{name: mark, type: InsertHeader, header: source, value.literal: datagen}}
---
name: {topic}-file
connector: file-sink
config: {{topics: [{routed}], file: {}, format: value}}
value_converter: {{type: json, schemas: false}}
transforms:
  - {{name: keepRouted, type: Filter, predicate: isRouted, negate: true}}
  - {{name: nameOnly, type: ExtractField$Value, field: name}}
predicates:
  - {{name: isRouted, type: TopicNameMatches, pattern: ".*-routed"}}
"#,
            out.display()
        ),
    )
    .expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let lines = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    wait_for("every record in the file", Duration::from_secs(120), || {
        (lines().len() as u64 >= COUNT).then_some(())
    });
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    // The routed topic holds every record, reshaped, with the header; the original none.
    let records = read_values_and_header(&routed);
    assert_eq!(records.len() as u64, COUNT);
    let mut seqs = BTreeSet::new();
    for (value, header) in &records {
        let value: serde_json::Value = serde_json::from_str(value).expect("json value");
        assert_eq!(value["origin"], "sluice", "{value}");
        assert!(value.get("amount").is_none(), "{value}");
        assert_eq!(header.as_deref(), Some("datagen"));
        seqs.insert(value["seq"].as_u64().expect("seq"));
    }
    assert_eq!(seqs, (0..COUNT).collect::<BTreeSet<_>>());
    assert!(
        read_values_and_header(&topic).is_empty(),
        "records reached the unrouted topic"
    );
    // The sink kept them (the negated predicate matched every topic) and extracted the name.
    let names: BTreeSet<String> = lines().into_iter().collect();
    let expected: BTreeSet<String> = (0..COUNT)
        .map(|seq| format!("user-{:04}", seq % 10_000))
        .collect();
    assert_eq!(lines().len() as u64, COUNT);
    assert_eq!(names, expected);
}

#[test]
fn validate_names_the_transform_and_field_of_each_mistake() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = dir.path().join("bad.yaml");
    std::fs::write(
        &pipeline,
        "name: bad\nconnector: datagen\nconfig: {topic: t}\ntransforms:\n  \
         - {name: route, type: RegexRouter, regex: \"(unclosed\", replacement: x}\n  \
         - {name: tag, type: InsertField$Value}\n  \
         - {name: what, type: NoSuchTransform}\n",
    )
    .expect("write");
    let out = std::process::Command::new(sluice_tests::sluice_bin())
        .args(["validate", "--output", "json"])
        .arg(&pipeline)
        .output()
        .expect("run validate");
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let fields: Vec<String> = report["files"][0]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        fields.iter().any(|f| f == "transforms.route.regex"),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f.starts_with("transforms.tag.")),
        "{fields:?}"
    );
    assert!(
        fields.iter().any(|f| f == "transforms.what.type"),
        "{fields:?}"
    );
}
