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

/// Distinct record keys in the complete JSON lines of a `format: record` output (a torn last
/// line does not count, nor do records written twice). The count grows only when a running
/// sink writes records it had not written before.
fn distinct_keys(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|record| record["key"].as_str().map(str::to_owned))
        .collect::<HashSet<String>>()
        .len()
}

/// Three SIGKILLs, then the output still parses line by line and holds every record. A kill that
/// lands inside a write leaves a partial last line; no test can time a kill into a write call, so
/// after each kill the test also appends such a partial line itself, as a torn write leaves it.
/// Each run is given records it has not written yet and waits for some of them, so each run
/// starts (and writes) after a torn line.
#[tokio::test(flavor = "multi_thread")]
async fn output_parses_line_by_line_after_three_sigkills() {
    const PER_ROUND: usize = 6_000;
    const ROUNDS: usize = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("sink-torn");
    kafka::create_topic(&topic, 3).await;
    let out = dir.path().join("out.jsonl");
    let worker = write_worker(dir.path(), "sink_batch_size: 200\n");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {topic}\nconnector: file-sink\nconfig: {{topics: [{topic}], file: {}, format: record}}\nvalue_converter: {{type: string}}\nkey_converter: {{type: string}}\n",
            out.display()
        ),
    )
    .expect("write pipeline");
    let producer = kafka::producer();
    for round in 0..ROUNDS {
        let range = round * PER_ROUND..(round + 1) * PER_ROUND;
        kafka::produce(
            &producer,
            &topic,
            range.map(|n| (n.to_string(), format!("record-{n:06}"))),
        )
        .await;
        let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
        let last = round + 1 == ROUNDS;
        let want = if last {
            ROUNDS * PER_ROUND
        } else {
            round * PER_ROUND + PER_ROUND / 2
        };
        wait_for(
            &format!("{want} distinct records in run {}", round + 1),
            Duration::from_secs(180),
            || (distinct_keys(&out) >= want).then_some(()),
        );
        if last {
            assert!(sluice.terminate(), "sluice did not stop cleanly");
            break;
        }
        sluice.kill_hard();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&out)
            .expect("open output");
        std::io::Write::write_all(
            &mut file,
            format!("{{\"topic\":\"{topic}\",\"partition\":1,\"off").as_bytes(),
        )
        .expect("append a torn line");
    }

    let total = ROUNDS * PER_ROUND;
    let text = std::fs::read_to_string(&out).expect("output");
    assert!(text.ends_with('\n'), "the file ends inside a line");
    let mut seen = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not a JSON record ({e}): {line}", i + 1));
        let key = record["key"].as_str().expect("string key");
        let n: usize = key.parse().expect("numeric key");
        assert_eq!(record["value"], format!("record-{n:06}"), "line {}", i + 1);
        assert_eq!(record["topic"], topic.as_str(), "line {}", i + 1);
        seen.insert(n);
    }
    let missing: Vec<usize> = (0..total).filter(|n| !seen.contains(n)).take(5).collect();
    assert!(missing.is_empty(), "missing records, e.g. {missing:?}");
    assert_eq!(seen.len(), total);
}
