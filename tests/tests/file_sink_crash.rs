//! SIGKILL a sink (topic -> file-sink) mid-stream and restart it: the file ends with every record.

use std::collections::HashSet;
use std::time::Duration;

use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

const RECORDS: usize = 50_000;
const CHUNK: usize = 5_000;

fn distinct_lines(path: &std::path::Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_then_restart_writes_every_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("sink");
    kafka::create_topic(&topic, 4).await;
    let out = dir.path().join("out.txt");
    let worker = write_worker(dir.path(), "sink_batch_size: 200\n");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {topic}\nconnector: file-sink\nconfig: {{topics: [{topic}], file: {}}}\nvalue_converter: {{type: string}}\n",
            out.display()
        ),
    )
    .expect("write pipeline");

    // Records arrive in chunks while the sink runs, so the kill lands mid-stream.
    let producer_topic = topic.clone();
    let producing = tokio::spawn(async move {
        let producer = kafka::producer();
        for start in (0..RECORDS).step_by(CHUNK) {
            let chunk = (start..start + CHUNK).map(|n| (n.to_string(), format!("record-{n:06}")));
            kafka::produce(&producer, &producer_topic, chunk).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });

    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for(
        "the sink to write 10,000 records",
        Duration::from_secs(120),
        || (distinct_lines(&out).len() >= 10_000).then_some(()),
    );
    sluice.kill_hard();
    let before_restart = distinct_lines(&out).len();
    producing.await.expect("producer");
    assert!(
        before_restart < RECORDS,
        "the kill should land mid-stream ({before_restart} written)"
    );

    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for("every record in the file", Duration::from_secs(180), || {
        (distinct_lines(&out).len() >= RECORDS).then_some(())
    });
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let text = std::fs::read_to_string(&out).expect("output");
    let lines: Vec<&str> = text.lines().collect();
    let distinct: HashSet<&str> = lines.iter().copied().collect();
    let expected: HashSet<String> = (0..RECORDS).map(|n| format!("record-{n:06}")).collect();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| !distinct.contains(e.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "missing records, e.g. {missing:?}");
    assert_eq!(
        distinct.len(),
        RECORDS,
        "the file holds lines that were never produced"
    );
    // Every line is complete: a torn line from the kill would not match a produced record.
    assert!(lines.iter().all(|l| expected.contains(*l)));
}
