//! datagen -> topic -> file-sink through the real binary; a clean stop commits, so a restart with
//! a larger count continues exactly where it stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn datagen_to_file_holds_every_record_once_in_partition_order_across_a_clean_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("datagen");
    kafka::create_topic(&topic, 3).await;
    let worker = write_worker(dir.path(), "");
    let out = dir.path().join("out.jsonl");
    let pipeline = |count: u32| {
        let path = dir.path().join(format!("pipeline-{count}.yaml"));
        std::fs::write(
            &path,
            format!(
                "name: {topic}-gen\nconnector: datagen\ntasks: 2\nconfig: {{topic: {topic}, count: {count}, batch_size: 100}}\n---\n\
                 name: {topic}-file\nconnector: file-sink\nconfig: {{topics: [{topic}], file: {}, format: record}}\n",
                out.display()
            ),
        )
        .expect("write pipeline");
        path
    };

    let first = pipeline(3000);
    let sluice = Sluice::run(dir.path(), &worker, &[&first]);
    wait_for("3000 lines", Duration::from_secs(120), || {
        (count_lines(&out) >= 3000).then_some(())
    });
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let second = pipeline(5000);
    let sluice = Sluice::run(dir.path(), &worker, &[&second]);
    wait_for("5000 lines", Duration::from_secs(120), || {
        (count_lines(&out) >= 5000).then_some(())
    });
    // Give a duplicate, if the restart produced one, the chance to show up before checking.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let text = std::fs::read_to_string(&out).expect("output");
    let mut seqs = Vec::new();
    let mut per_partition: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).expect("json line");
        let seq = record["value"]["seq"].as_i64().expect("seq");
        let (key, value) = sluice_connector_datagen::record_for(seq as u64);
        assert_eq!(
            record["key"],
            serde_json::json!(key.as_str().expect("string key"))
        );
        assert_eq!(record["value"], value.to_plain_json(), "value of seq {seq}");
        per_partition
            .entry(record["partition"].as_i64().expect("partition"))
            .or_default()
            .push((record["offset"].as_i64().expect("offset"), seq));
        seqs.push(seq);
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    // Clean stops commit both sides: exactly once, nothing missing, nothing repeated.
    assert_eq!(sorted, (0..5000).collect::<Vec<_>>());
    assert_eq!(per_partition.len(), 3);
    for (partition, records) in per_partition {
        assert!(
            records.windows(2).all(|w| w[0].0 < w[1].0),
            "offsets out of order in partition {partition}"
        );
    }

    // The topic itself holds each record once too (the source resumed from its stored offsets).
    let topic_records = tokio::task::spawn_blocking(move || kafka::read_all(&topic))
        .await
        .expect("read");
    assert_eq!(topic_records.len(), 5000);
}
