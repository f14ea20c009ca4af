//! SIGKILL `sluice run` while a file-source streams a growing 100,000-line file into a topic,
//! restart it, and count: every line at least once, none missing, and duplicates only after the
//! position that was committed when it was killed.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

const LINES: usize = 100_000;
const CHUNK: usize = 2_000;

fn line(n: usize) -> String {
    format!("line-{n:06} {}", "x".repeat(n % 40))
}

fn committed_position(offsets_file: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(offsets_file).ok()?;
    let stored: serde_json::Value = serde_json::from_str(&text).ok()?;
    stored["offsets"][0]["value"]["position"].as_u64()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_no_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("lines");
    kafka::create_topic(&topic, 1).await;
    let input = dir.path().join("input.txt");
    std::fs::write(&input, "").expect("create input");
    let worker = write_worker(dir.path(), "");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {topic}\nconnector: file-source\nconfig: {{file: {}, topic: {topic}, batch_size: 500}}\nvalue_converter: {{type: string}}\n",
            input.display()
        ),
    )
    .expect("write pipeline");

    // The file grows while sluice streams it, so the kill lands mid-stream.
    let writer_path = input.clone();
    let writer = std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(writer_path)
            .expect("open input");
        for start in (0..LINES).step_by(CHUNK) {
            let chunk: String = (start..start + CHUNK).map(|n| line(n) + "\n").collect();
            file.write_all(chunk.as_bytes()).expect("append");
            std::thread::sleep(Duration::from_millis(40));
        }
    });

    let offsets_file = dir.path().join("offsets.json");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for("a committed position", Duration::from_secs(120), || {
        committed_position(&offsets_file).filter(|p| *p > 100_000)
    });
    sluice.kill_hard();
    let committed = committed_position(&offsets_file).expect("committed position after kill");
    writer.join().expect("writer");
    let file_len = std::fs::metadata(&input).expect("input").len();
    assert!(
        committed < file_len,
        "the kill should land mid-stream (committed {committed} of {file_len})"
    );

    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_for(
        "the whole file to be committed",
        Duration::from_secs(180),
        || (committed_position(&offsets_file)? == file_len).then_some(()),
    );
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let read = tokio::task::spawn_blocking(move || kafka::read_all(&topic))
        .await
        .expect("read topic");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for record in &read {
        *counts.entry(record.value_text()).or_default() += 1;
    }
    let mut end = 0u64;
    let mut duplicated_before_commit = Vec::new();
    for n in 0..LINES {
        let text = line(n);
        end += text.len() as u64 + 1;
        let seen = counts.get(&text).copied().unwrap_or(0);
        assert!(seen >= 1, "line {n} is missing from the topic");
        if end <= committed && seen > 1 {
            duplicated_before_commit.push(n);
        }
    }
    assert!(
        duplicated_before_commit.is_empty(),
        "lines before the committed position were produced twice: {:?}",
        &duplicated_before_commit[..duplicated_before_commit.len().min(5)]
    );
    assert_eq!(
        counts.len(),
        LINES,
        "the topic holds lines that are not in the file"
    );
    assert!(read.len() >= LINES);
}
