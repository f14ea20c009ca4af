//! `s3-sink` and `s3-source` against a real broker and a real S3-compatible server (s3s-fs):
//! every record archived exactly once (also across SIGKILLs and an S3 outage), time partitions
//! and scheduled rotation, and a replay that restores a topic as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use sluice_tests::s3::{Archived, S3Server, read_topic_archive};
use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

const BUCKET: &str = "archive";
const PARTITIONS: i32 = 3;
/// Record timestamps start an hour ago: the broker applies retention (7 days) to record time, so
/// older timestamps would make the records expire at once.
fn base_ts() -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| chrono::Utc::now().timestamp_millis() - 3_600_000)
}

/// The n-th test record: partition n % 3, so partition p's i-th record is n = 3i + p.
fn expected(n: usize, value_len: usize) -> Archived {
    let mut value = format!("v{n:09}-").into_bytes();
    value.push(0xff); // not UTF-8: the archive must keep bytes, not text
    value.resize(value_len.max(value.len()), b'x');
    Archived {
        topic: String::new(),
        partition: (n % PARTITIONS as usize) as i32,
        offset: (n / PARTITIONS as usize) as i64,
        timestamp: Some(base_ts() + n as i64),
        key: Some(format!("k{n}").into_bytes()),
        value: Some(value),
        headers: vec![
            ("seq".to_owned(), Some(n.to_string().into_bytes())),
            ("empty".to_owned(), None),
        ],
    }
}

async fn produce(topic: &str, range: std::ops::Range<usize>, value_len: usize) {
    let producer = kafka::producer();
    let mut pending = Vec::new();
    for n in range {
        let r = expected(n, value_len);
        let headers = OwnedHeaders::new()
            .insert(rdkafka::message::Header {
                key: "seq",
                value: r.headers[0].1.as_deref(),
            })
            .insert(rdkafka::message::Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        let key = r.key.clone().unwrap_or_default();
        let value = r.value.clone().unwrap_or_default();
        let record = FutureRecord::to(topic)
            .partition(r.partition)
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(r.timestamp.unwrap_or_default());
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
        if pending.len() >= 20_000 {
            for d in pending.drain(..) {
                d.await
                    .expect("delivery")
                    .map_err(|(e, _)| e)
                    .expect("delivered");
            }
        }
    }
    for d in pending {
        d.await
            .expect("delivery")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Checks that `records` hold records 0..total of `topic` exactly once, intact.
fn assert_exactly_once(topic: &str, records: &[Archived], total: usize, value_len: usize) {
    let mut by_partition: BTreeMap<i32, Vec<&Archived>> = BTreeMap::new();
    for r in records {
        assert_eq!(r.topic, topic, "a record of another topic");
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut seen = 0;
    for (p, mut list) in by_partition {
        list.sort_by_key(|r| r.offset);
        for (i, r) in list.iter().enumerate() {
            assert_eq!(
                r.offset, i as i64,
                "partition {p}: offsets must be 0.. each exactly once (missing or duplicate near {i})"
            );
            let n = 3 * i + p as usize;
            let mut want = expected(n, value_len);
            want.topic = topic.to_owned();
            assert_eq!(
                **r, want,
                "partition {p} offset {i} differs from what was produced"
            );
        }
        seen += list.len();
    }
    assert_eq!(seen, total, "the archive does not hold every record");
}

fn write_pipeline(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, body).expect("write pipeline");
    path
}

/// A sink pipeline (bytes converters: the archive keeps the exact bytes).
fn sink_pipeline(server: &S3Server, name: &str, topic: &str, extra: &str) -> String {
    format!(
        "name: {name}\nconnector: s3-sink\nconfig:\n{}  topics: [{topic}]\n  topics_dir: {name}\n{extra}key_converter: {{type: bytes}}\nvalue_converter: {{type: bytes}}\n",
        server.pipeline_config(BUCKET)
    )
}

async fn caught_up(name: &str, topic: &str, limit: Duration) {
    let (group, topic) = (format!("connect-{name}"), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        wait_for(
            &format!("{group} to commit the end of {topic}"),
            limit,
            || kafka::caught_up(&group, &topic).then_some(()),
        )
    })
    .await
    .expect("wait");
}

fn archive_records() -> usize {
    std::env::var("SLUICE_S3_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Acceptance 1: a million records over three partitions archived as JSON lines and as Parquet
/// read back (Parquet with the parquet crate) exactly once with key, value, headers, timestamp.
#[tokio::test(flavor = "multi_thread")]
async fn million_records_archived_once_as_json_and_parquet() {
    let total = archive_records();
    let value_len = 64;
    let server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("s3-million");
    kafka::create_topic(&topic, PARTITIONS).await;
    produce(&topic, 0..total, value_len).await;

    let json = unique("json");
    let parquet = unique("parquet");
    // flush_size does not divide the partition sizes: the scheduled rotation closes the tails.
    let rotation = "  flush_size: 50000\n  rotate_schedule_interval: 3s\n";
    let pipeline = format!(
        "{}---\n{}",
        sink_pipeline(&server, &json, &topic, rotation),
        sink_pipeline(
            &server,
            &parquet,
            &topic,
            &format!("{rotation}  format: parquet\n  compression: zstd\n")
        )
    );
    let pipeline = write_pipeline(dir.path(), "archive", &pipeline);
    let worker = write_worker(dir.path(), "");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    caught_up(&json, &topic, Duration::from_secs(900)).await;
    caught_up(&parquet, &topic, Duration::from_secs(900)).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    for (name, ext) in [(&json, ".json"), (&parquet, ".parquet")] {
        let (keys, records) = read_topic_archive(&server, BUCKET, name, &topic).await;
        assert!(keys.iter().all(|k| k.ends_with(ext)), "{keys:?}");
        assert_exactly_once(&topic, &records, total, value_len);
        assert_names_match_first_offsets(&server, name, &topic).await;
    }
}

/// Every object's name carries the offset of its first record; no other objects exist.
async fn assert_names_match_first_offsets(server: &S3Server, dir: &str, topic: &str) {
    for key in server.list(BUCKET, &format!("{dir}/")).await {
        let data = server.get(BUCKET, &key).await;
        let records = sluice_tests::s3::read_archived(&key, data);
        let first = records
            .iter()
            .map(|r| r.offset)
            .min()
            .expect("non-empty object");
        let partition = records[0].partition;
        let ext = key.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
        assert_eq!(
            key,
            format!("{dir}/{topic}/partition={partition}/{topic}+{partition}+{first:020}.{ext}"),
            "object name does not match its content"
        );
    }
}

/// Acceptance 2: SIGKILL the sink three times mid-archive, restart: still exactly once, and no
/// partial or duplicate objects afterwards. Files are big enough to be multipart uploads.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_three_times_still_archives_exactly_once() {
    let total = 300_000;
    let value_len = 400;
    let flush_size = 10_000;
    let server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("s3-crash");
    kafka::create_topic(&topic, PARTITIONS).await;
    produce(&topic, 0..total, value_len).await;

    let name = unique("crash");
    // ~7 MB per file with 5 MiB parts: every file is a multipart upload.
    let pipeline = write_pipeline(
        dir.path(),
        "crash",
        &sink_pipeline(
            &server,
            &name,
            &topic,
            &format!("  flush_size: {flush_size}\n  part_size: 5242880\n"),
        ),
    );
    let worker = write_worker(dir.path(), "");
    let files = total / flush_size;
    let prefix = format!("{name}/");
    for kill in 1..=3 {
        let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
        let target = 5 * kill;
        let mut at_kill = 0;
        while at_kill < target {
            tokio::time::sleep(Duration::from_millis(50)).await;
            at_kill = server.list(BUCKET, &prefix).await.len();
        }
        sluice.kill_hard();
        assert!(
            at_kill < files,
            "kill {kill} should land mid-archive ({at_kill} of {files} objects)"
        );
    }
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    caught_up(&name, &topic, Duration::from_secs(600)).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let (keys, records) = read_topic_archive(&server, BUCKET, &name, &topic).await;
    assert_eq!(
        keys.len(),
        files,
        "one object per {flush_size} records: {keys:?}"
    );
    assert_exactly_once(&topic, &records, total, value_len);
    assert_names_match_first_offsets(&server, &name, &topic).await;
}

/// Acceptance 3: the time partitioner writes the expected prefixes for known timestamps (in a
/// zone other than UTC), and `rotate_schedule_interval` closes the files of a partition
/// that went quiet long before `flush_size`.
#[tokio::test(flavor = "multi_thread")]
async fn time_partitions_and_scheduled_rotation() {
    let server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("s3-time");
    kafka::create_topic(&topic, 1).await;
    // Recent timestamps (the broker expires old ones), several hours apart; their directories in
    // Asia/Kolkata (UTC+05:30, so the hour and even the day differ from UTC) are computed with
    // chrono's own formatting, independently of the connector's path_format code.
    let kolkata = chrono::FixedOffset::east_opt(5 * 3600 + 1800).expect("offset");
    let now = chrono::Utc::now().timestamp_millis();
    let cases: Vec<(i64, String)> = [30i64, 20, 11, 2]
        .iter()
        .map(|hours_ago| {
            let ts = now - hours_ago * 3_600_000;
            let local = chrono::DateTime::from_timestamp_millis(ts)
                .expect("time")
                .with_timezone(&kolkata);
            (
                ts,
                local.format("year=%Y/month=%m/day=%d/hour=%H").to_string(),
            )
        })
        .collect();
    let producer = kafka::producer();
    let mut expected_dirs: HashMap<i64, &str> = HashMap::new();
    for (i, (ts, path)) in cases.iter().enumerate() {
        for j in 0..5 {
            let offset = (i * 5 + j) as i64;
            expected_dirs.insert(offset, path.as_str());
            let key = format!("k{offset}");
            producer
                .send(
                    FutureRecord::to(&topic)
                        .partition(0)
                        .key(&key)
                        .payload("v")
                        .timestamp(*ts),
                    Duration::from_secs(10),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
        }
    }
    let name = unique("time");
    let pipeline = write_pipeline(
        dir.path(),
        "time",
        &sink_pipeline(
            &server,
            &name,
            &topic,
            "  partitioner: time\n  path_format: \"'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH\"\n  timezone: Asia/Kolkata\n  flush_size: 1000\n  rotate_schedule_interval: 2s\n",
        ),
    );
    let worker = write_worker(dir.path(), "");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    // 20 records, flush_size 1000: only the schedule can close these files.
    caught_up(&name, &topic, Duration::from_secs(120)).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let (keys, records) = read_topic_archive(&server, BUCKET, &name, &topic).await;
    let dirs: BTreeSet<String> = keys
        .iter()
        .map(|k| {
            let rest = k.strip_prefix(&format!("{name}/{topic}/")).expect("prefix");
            rest.rsplit_once('/').expect("dir").0.to_owned()
        })
        .collect();
    let want: BTreeSet<String> = cases.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(dirs, want);
    assert_eq!(keys.len(), 4, "one file per hour directory: {keys:?}");
    assert_eq!(records.len(), 20);
    for key in &keys {
        let data = server.get(BUCKET, key).await;
        for r in sluice_tests::s3::read_archived(key, data) {
            assert!(
                key.contains(expected_dirs[&r.offset]),
                "offset {} (ts {:?}) is in {key}",
                r.offset,
                r.timestamp
            );
        }
    }
}

/// Issue #19: the S3 server is stopped for longer than the SDK's retries last (the default
/// `SLUICE_TEST_S3_OUTAGE_SECS` of 45 s is several retry cycles; 600 is the 10-minute outage) and
/// started again on the same port and data. Two sinks archive the topic meanwhile, one rotating on
/// record counts and one on the wall clock (2 tasks, sets waiting for commits). Neither task
/// fails or restarts: each drops what is not durable, the runtime delivers it again, and once S3
/// is back the archive holds every record exactly once. A fourth sink with a 10 s
/// `errors.retry_timeout` fails for it, with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn s3_outage_longer_than_the_retries_restarts_nothing_and_loses_and_duplicates_nothing() {
    // 14,000 per partition: whole sets of 1,000 for the count-rotated sink.
    let total = 42_000;
    let value_len = 100;
    let outage = Duration::from_secs(
        std::env::var("SLUICE_TEST_S3_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(45),
    );
    let mut server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("s3-outage");
    kafka::create_topic(&topic, PARTITIONS).await;
    produce(&topic, 0..total / 2, value_len).await;
    // Few, quick SDK retries: the outage outlasts them many times over.
    let retries = "  max_retries: 2\n  retry_backoff: 50ms\n  retry_max_backoff: 500ms\n";
    let backoff = "errors: {retry_delay_max: 2s}\n";
    let counted = unique("outage-count");
    let scheduled = unique("outage-sched");
    let pipelines = format!(
        "{}{backoff}---\n{}{backoff}tasks: 2\n",
        sink_pipeline(
            &server,
            &counted,
            &topic,
            &format!("  flush_size: 1000\n{retries}")
        ),
        sink_pipeline(
            &server,
            &scheduled,
            &topic,
            &format!("  flush_size: 700\n  rotate_schedule_interval: 2s\n{retries}")
        ),
    );
    let pipeline = write_pipeline(dir.path(), "outage", &pipelines);
    let port = sluice_tests::free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let mut sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let url = format!("http://127.0.0.1:{port}");
    for name in [&counted, &scheduled] {
        let prefix = format!("{name}/");
        while server.list(BUCKET, &prefix).await.len() < 3 {
            assert!(sluice.is_running(), "sluice exited: {}", sluice.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop();
    // Two more sinks are created over REST while S3 is away.
    let create = |name: String, settings: serde_json::Value| {
        let mut config = server.rest_config(BUCKET);
        config.extend([
            ("connector.class".to_owned(), "s3-sink".into()),
            ("topics".to_owned(), topic.clone().into()),
            ("topics_dir".to_owned(), name.clone().into()),
            ("max_retries".to_owned(), "1".into()),
            ("key.converter".to_owned(), "bytes".into()),
            ("value.converter".to_owned(), "bytes".into()),
        ]);
        if let serde_json::Value::Object(settings) = settings {
            config.extend(settings);
        }
        let url = format!("{url}/connectors/{name}/config");
        async move {
            let (code, body) = sluice_tests::cluster::call(
                reqwest::Method::PUT,
                &url,
                Some(serde_json::Value::Object(config)),
            )
            .await;
            assert_eq!(code, 201, "{body}");
        }
    };
    // The third starts while S3 is away: its task waits for S3 instead of failing its start.
    let late = unique("outage-late");
    create(
        late.clone(),
        serde_json::json!({
            "tasks.max": "1",
            "flush_size": "1400",
            "retry_backoff": "50",
            "errors.retry.delay.max.ms": "2000",
        }),
    )
    .await;
    let sinks = [&counted, &scheduled, &late];
    // The fourth allows 10 s of failures (`errors.retry_timeout`): it must fail for that.
    let limited = unique("outage-limited");
    create(
        limited.clone(),
        serde_json::json!({
            "flush_size": "1000",
            "errors.retry.timeout": "10000",
            "errors.retry.delay.max.ms": "1000",
        }),
    )
    .await;
    // More records arrive while S3 is away.
    produce(&topic, total / 2..total, value_len).await;
    let began = std::time::Instant::now();
    while began.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(sluice.is_running(), "sluice exited: {}", sluice.log_text());
        for name in sinks {
            sluice_tests::cluster::assert_never_restarted(&url, name).await;
        }
    }
    // The limited sink failed for its retry timeout (and was restarted by policy, so its status
    // shows FAILED only for a moment: the worker's log keeps the failure). S3 stays away until then.
    let log_path = sluice.log.clone();
    let limited_in_log = format!("connector={limited}");
    let failure = tokio::task::spawn_blocking(move || {
        wait_for(
            "the sink with errors.retry_timeout 10 s to fail for it",
            Duration::from_secs(180),
            || {
                std::fs::read_to_string(&log_path).ok().and_then(|log| {
                    log.lines()
                        .find(|l| {
                            l.contains(&limited_in_log)
                                && l.contains("longer than errors.retry_timeout")
                        })
                        .map(str::to_owned)
                })
            },
        )
    })
    .await
    .expect("wait");
    assert!(failure.contains("S3"), "{failure}");
    // The outage outlasted the SDK's retries: the sinks went back to what is durable, and then
    // took nothing until S3 answered (no re-reading in a loop).
    let log = sluice.log_text();
    assert!(
        log.contains("once S3 answers") && log.contains("S3 is still unavailable"),
        "the sinks never gave up on a request: the outage was too short to test anything"
    );
    server.restart();
    caught_up(&counted, &topic, Duration::from_secs(300)).await;
    caught_up(&scheduled, &topic, Duration::from_secs(300)).await;
    caught_up(&late, &topic, Duration::from_secs(300)).await;
    for name in sinks {
        sluice_tests::cluster::assert_never_restarted(&url, name).await;
    }
    assert!(sluice.is_running(), "sluice exited: {}", sluice.log_text());
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let (keys, records) = read_topic_archive(&server, BUCKET, &counted, &topic).await;
    assert_eq!(keys.len(), total / 1000, "{keys:?}");
    assert_exactly_once(&topic, &records, total, value_len);
    let (_, records) = read_topic_archive(&server, BUCKET, &scheduled, &topic).await;
    assert_exactly_once(&topic, &records, total, value_len);
    let (keys, records) = read_topic_archive(&server, BUCKET, &late, &topic).await;
    assert_eq!(keys.len(), total / 1400, "{keys:?}");
    assert_exactly_once(&topic, &records, total, value_len);
}

/// Acceptance 5: `s3-source` restores archived topics (JSON lines and Parquet) into new topics
/// equal to the original per partition, in order, with keys, values, headers and timestamps.
#[tokio::test(flavor = "multi_thread")]
async fn replay_restores_the_topic() {
    let total = 30_000;
    let value_len = 80;
    let server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("s3-replay");
    kafka::create_topic(&topic, PARTITIONS).await;
    produce(&topic, 0..total, value_len).await;
    let json = unique("rjson");
    let parquet = unique("rparquet");
    let sinks = format!(
        "{}---\n{}",
        sink_pipeline(&server, &json, &topic, "  flush_size: 1000\n"),
        sink_pipeline(
            &server,
            &parquet,
            &topic,
            "  flush_size: 2500\n  format: parquet\n  compression: snappy\n"
        )
    );
    let sinks = write_pipeline(dir.path(), "sinks", &sinks);
    let worker = write_worker(dir.path(), "");
    let sluice = Sluice::run(dir.path(), &worker, &[&sinks]);
    caught_up(&json, &topic, Duration::from_secs(300)).await;
    caught_up(&parquet, &topic, Duration::from_secs(300)).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let mut sources = Vec::new();
    let mut restored = Vec::new();
    for archive in [&json, &parquet] {
        let target = format!("{archive}-restored");
        kafka::create_topic(&target, PARTITIONS).await;
        sources.push(format!(
            "name: {archive}-replay\nconnector: s3-source\nconfig:\n{}  topics: [{topic}]\n  topics_dir: {archive}\n  topic_mapping: {{{topic}: {target}}}\n  poll_interval: 1s\ntasks: 2\nkey_converter: {{type: bytes}}\nvalue_converter: {{type: bytes}}\n",
            server.pipeline_config(BUCKET)
        ));
        restored.push(target);
    }
    let sources = write_pipeline(dir.path(), "sources", &sources.join("---\n"));
    let sluice = Sluice::run(dir.path(), &worker, &[&sources]);
    for target in &restored {
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            wait_for(
                "the restored topic to fill",
                Duration::from_secs(300),
                || {
                    let n: i64 = kafka::end_offsets(&target).values().sum();
                    (n >= total as i64).then_some(())
                },
            )
        })
        .await
        .expect("wait");
    }
    // Give a wrong replay (duplicates) the chance to show before stopping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let original = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || kafka::read_all(&topic))
            .await
            .expect("read")
    };
    let per_partition = |reads: Vec<kafka::Read>| {
        let mut out: BTreeMap<i32, Vec<kafka::Read>> = BTreeMap::new();
        for r in reads {
            out.entry(r.partition).or_default().push(r);
        }
        out
    };
    let original = per_partition(original);
    assert_eq!(original.values().map(Vec::len).sum::<usize>(), total);
    for target in restored {
        let copy = tokio::task::spawn_blocking(move || kafka::read_all(&target))
            .await
            .expect("read");
        assert_eq!(per_partition(copy), original, "the restored topic differs");
    }
}

/// Acceptance (issue 19): records the field partitioner cannot place (a tombstone, a value that
/// is not a struct) are bad records like any other: with `errors.tolerance: all` they land in
/// the dead-letter topic with the error headers, the task keeps running, and every other record
/// is archived exactly once under its field's directory.
#[tokio::test(flavor = "multi_thread")]
async fn records_the_field_partitioner_cannot_place_go_to_the_dead_letter_topic() {
    const TOTAL: i64 = 40;
    const TOMBSTONE: i64 = 7;
    const NOT_A_STRUCT: i64 = 23;
    let server = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("s3-poison");
    let dlq = format!("{topic}-dlq");
    kafka::create_topic(&topic, 1).await;
    kafka::create_topic(&dlq, 1).await;
    let region = |n: i64| if n % 2 == 0 { "eu" } else { "us" };
    let producer = kafka::producer();
    for n in 0..TOTAL {
        let key = format!("k{n}");
        let value = match n {
            TOMBSTONE => None,
            NOT_A_STRUCT => {
                Some(r#"{"schema":{"type":"string"},"payload":"not a struct"}"#.to_owned())
            }
            _ => Some(format!(
                r#"{{"schema":{{"type":"struct","fields":[{{"field":"region","type":"string"}},{{"field":"n","type":"int64"}}]}},"payload":{{"region":"{}","n":{n}}}}}"#,
                region(n)
            )),
        };
        let mut record = FutureRecord::to(&topic).partition(0).key(&key);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let name = unique("poison");
    // A second sink archives the raw values (`bytes`): there the structs are what it cannot hold.
    let raw = unique("poison-raw");
    let raw_dlq = format!("{topic}-dlq-raw");
    kafka::create_topic(&raw_dlq, 1).await;
    let pipeline = write_pipeline(
        dir.path(),
        "poison",
        &format!(
            "name: {name}\nconnector: s3-sink\nconfig:\n{}  topics: [{topic}]\n  topics_dir: {name}\n  partitioner: field\n  partition_fields: [region]\n  flush_size: 6\n  rotate_schedule_interval: 2s\nkey_converter: {{type: string}}\nvalue_converter: {{type: json}}\nerrors: {{tolerance: all, dlq_topic: {dlq}}}\n---\n\
             name: {raw}\nconnector: s3-sink\nconfig:\n{}  topics: [{topic}]\n  topics_dir: {raw}\n  format: bytes\n  flush_size: 1\nkey_converter: {{type: string}}\nvalue_converter: {{type: json}}\nerrors: {{tolerance: all, dlq_topic: {raw_dlq}}}\n",
            server.pipeline_config(BUCKET),
            server.pipeline_config(BUCKET)
        ),
    );
    let worker = write_worker(dir.path(), "");
    let mut sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    caught_up(&name, &topic, Duration::from_secs(120)).await;
    caught_up(&raw, &topic, Duration::from_secs(120)).await;
    assert!(sluice.is_running(), "sluice exited: {}", sluice.log_text());
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    // The archive: every other record once, in its region's directory.
    let mut archived: BTreeMap<i64, String> = BTreeMap::new();
    for key in server.list(BUCKET, &format!("{name}/{topic}/")).await {
        let text = String::from_utf8(server.get(BUCKET, &key).await).expect("utf-8 JSON lines");
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            let offset = record["offset"].as_i64().expect("offset");
            assert_eq!(record["value"]["n"], offset, "{line}");
            assert!(
                key.starts_with(&format!("{name}/{topic}/region={}/", region(offset))),
                "offset {offset} is in {key}"
            );
            assert!(
                archived.insert(offset, key.clone()).is_none(),
                "offset {offset} archived twice"
            );
        }
    }
    let want: BTreeSet<i64> = (0..TOTAL)
        .filter(|n| ![TOMBSTONE, NOT_A_STRUCT].contains(n))
        .collect();
    assert_eq!(archived.keys().copied().collect::<BTreeSet<_>>(), want);

    // The dead letters: exactly the two, with headers naming the record and the reason.
    let dead = tokio::task::spawn_blocking(move || kafka::read_all(&dlq))
        .await
        .expect("read the dead-letter topic");
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (letter, offset) in dead.iter().zip([TOMBSTONE, NOT_A_STRUCT]) {
        let header = |key: &str| {
            letter
                .headers
                .iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| panic!("no header {key}: {letter:?}"))
        };
        assert_eq!(letter.key.as_deref(), Some(format!("k{offset}").as_bytes()));
        assert_eq!(header("__connect.errors.topic"), topic);
        assert_eq!(header("__connect.errors.partition"), "0");
        assert_eq!(header("__connect.errors.offset"), offset.to_string());
        assert_eq!(header("__connect.errors.connector.name"), name);
        assert_eq!(header("__connect.errors.stage"), "TASK_PUT");
        let message = header("__connect.errors.exception.message");
        assert!(
            message.contains("the field partitioner needs a struct value"),
            "{message}"
        );
    }

    // The raw archive: the string value and the tombstone (an empty line), one object each;
    // every struct went to its dead-letter topic instead of failing the task.
    let mut raw_archived = BTreeMap::new();
    for key in server.list(BUCKET, &format!("{raw}/{topic}/")).await {
        let offset: i64 = key
            .rsplit('+')
            .next()
            .and_then(|tail| tail.split('.').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no first offset in {key}"));
        raw_archived.insert(offset, server.get(BUCKET, &key).await);
    }
    assert_eq!(
        raw_archived,
        BTreeMap::from([
            (TOMBSTONE, b"\n".to_vec()),
            (NOT_A_STRUCT, b"not a struct\n".to_vec()),
        ])
    );
    let dead = tokio::task::spawn_blocking(move || kafka::read_all(&raw_dlq))
        .await
        .expect("read the raw sink's dead-letter topic");
    let dead_offsets: Vec<String> = dead
        .iter()
        .map(|letter| {
            let header = |key: &str| {
                letter
                    .headers
                    .iter()
                    .find(|(k, _)| k == key)
                    .and_then(|(_, v)| v.as_deref())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| panic!("no header {key}: {letter:?}"))
            };
            let message = header("__connect.errors.exception.message");
            assert!(
                message.contains("format `bytes` needs byte or string values"),
                "{message}"
            );
            header("__connect.errors.offset")
        })
        .collect();
    let want: Vec<String> = (0..TOTAL)
        .filter(|n| ![TOMBSTONE, NOT_A_STRUCT].contains(n))
        .map(|n| n.to_string())
        .collect();
    assert_eq!(dead_offsets, want);
}
