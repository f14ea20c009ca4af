//! Sink tasks while their consumer group rebalances again and again (tasks added and removed, a
//! worker SIGKILLed and restarted): a revoked partition is closed and its durable offsets
//! committed before the group hands it on, so a Postgres table ends at the last update of every
//! key, the group's committed offsets never move backwards, and an S3 archive holds every
//! offset exactly once although its files also close on a wall-clock schedule.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::cluster::{Cluster, call, wait_async};
use sluice_tests::postgres;
use sluice_tests::s3::{S3Server, read_topic_archive};
use sluice_tests::{kafka, unique, wait_for};

const BUCKET: &str = "rebalance";
const PARTITIONS: i32 = 6;

/// The `pipeline_config` lines of the S3 server as connector config entries.
async fn put_config(cluster: &Cluster, not: Option<usize>, name: &str, config: &Value) {
    // A worker just killed may have led the group: writes fail until another leads.
    wait_async(
        &format!("{name}'s config to be taken"),
        Duration::from_secs(60),
        || async {
            let via = live(cluster, not);
            let url = format!("{}/connectors/{name}/config", cluster.workers[via].url);
            let (code, _) = call(Method::PUT, &url, Some(config.clone())).await;
            (code == 200 || code == 201).then_some(())
        },
    )
    .await;
}

/// A live worker's index, other than `not`.
fn live(cluster: &Cluster, not: Option<usize>) -> usize {
    (0..cluster.workers.len())
        .find(|i| Some(*i) != not && cluster.workers[*i].process.is_some())
        .expect("a live worker")
}

/// Committed offsets of `group` sampled until `stop`; each sample per partition.
fn sample_commits(
    group: String,
    topic: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<HashMap<i32, i64>>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push(kafka::committed(&group, &topic, PARTITIONS));
            std::thread::sleep(Duration::from_millis(150));
        }
        samples
    })
}

/// Every partition's committed offset over the samples, checked to never decrease.
fn assert_monotonic(what: &str, samples: &[HashMap<i32, i64>]) {
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for (i, sample) in samples.iter().enumerate() {
        for (p, offset) in sample {
            if let Some(before) = last.get(p) {
                assert!(
                    offset >= before,
                    "{what}: partition {p} committed offset moved back from {before} to {offset} (sample {i} of {})",
                    samples.len()
                );
            }
            last.insert(*p, *offset);
        }
    }
    assert!(
        samples.len() > 10,
        "{what}: too few samples ({})",
        samples.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sinks_commit_and_close_revoked_partitions_before_the_group_moves_them() {
    let pg = postgres::shared();
    let db = pg.database("rebalance");
    pg.psql(
        &db,
        "CREATE TABLE kv (id bigint PRIMARY KEY, seq bigint NOT NULL)",
    );
    let server = S3Server::start(BUCKET);
    let topic = unique("updates");
    kafka::create_topic(&topic, PARTITIONS).await;

    let mut cluster = Cluster::start(0, "");
    // A SIGKILLed worker's sink consumers leave their groups within seconds, not librdkafka's
    // default 45 s.
    // Commits at the default interval: between two, a partition closes many file sets.
    cluster.offset_flush_interval = "5s".into();
    cluster.worker_extra =
        "consumer:\n  session.timeout.ms: \"6000\"\n  heartbeat.interval.ms: \"1000\"\n".into();
    for _ in 0..3 {
        cluster.add_worker();
    }
    cluster.wait_healthy().await;
    let (pg_name, s3_name) = (unique("kv-sink"), unique("kv-archive"));
    let pg_config = |tasks: u32| {
        json!({
            "connector.class": "postgres-sink",
            "tasks.max": tasks.to_string(),
            "topics": topic,
            "url": pg.url(&db),
            "table_name_format": "kv",
            "primary_key_fields": "id",
            "batch_size": "7",
            "key.converter": "json",
            "key.converter.schemas.enable": "false",
            "value.converter": "json",
            "value.converter.schemas.enable": "false",
        })
    };
    let s3 = server.rest_config(BUCKET);
    let s3_config = |tasks: u32| {
        let mut config = json!({
            "connector.class": "s3-sink",
            "tasks.max": tasks.to_string(),
            "topics": topic,
            "topics_dir": s3_name,
            "format": "json",
            // Sets close on record counts and on the wall clock: a re-consumption closes them
            // elsewhere, and yet a partition's objects must tile its offsets.
            "flush_size": "53",
            "rotate_schedule_interval": "1s",
            "key.converter": "bytes",
            "value.converter": "bytes",
        });
        if let Some(c) = config.as_object_mut() {
            c.extend(s3.clone());
        }
        config
    };
    put_config(&cluster, None, &pg_name, &pg_config(2)).await;
    put_config(&cluster, None, &s3_name, &s3_config(2)).await;
    cluster.wait_running(0, &pg_name, 2).await;
    cluster.wait_running(0, &s3_name, 2).await;

    // Keyed updates: every key gets increasing sequence numbers, in rounds, while the groups
    // rebalance underneath.
    let keys: i64 = 240;
    let rounds: i64 = 60;
    let stop = Arc::new(AtomicBool::new(false));
    let pg_samples = sample_commits(format!("connect-{pg_name}"), topic.clone(), stop.clone());
    let s3_samples = sample_commits(format!("connect-{s3_name}"), topic.clone(), stop.clone());
    let producing = {
        let topic = topic.clone();
        tokio::spawn(async move {
            let producer = kafka::producer();
            for round in 0..rounds {
                let updates = (0..keys).map(|k| {
                    let seq = round * keys + k;
                    (k.to_string(), format!(r#"{{"id": {k}, "seq": {seq}}}"#))
                });
                kafka::produce(&producer, &topic, updates).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // At least ten rebalances of both groups: task counts go up and down, a worker is
    // SIGKILLed and comes back.
    let plan: [(&str, u32); 12] = [
        ("tasks", 3),
        ("kill", 0),
        ("tasks", 1),
        ("restart", 0),
        ("tasks", 4),
        ("tasks", 2),
        ("kill", 0),
        ("tasks", 3),
        ("restart", 0),
        ("tasks", 1),
        ("tasks", 2),
        ("tasks", 3),
    ];
    let mut killed = None;
    for (step, tasks) in plan {
        match step {
            "tasks" => {
                put_config(&cluster, killed, &pg_name, &pg_config(tasks)).await;
                put_config(&cluster, killed, &s3_name, &s3_config(tasks)).await;
            }
            "kill" => {
                // The worker running the archive's first task: it dies with file sets uploaded
                // since the last commit.
                let via = live(&cluster, None);
                let url = format!("{}/connectors/{s3_name}/status", cluster.workers[via].url);
                let (_, status) = call(Method::GET, &url, None).await;
                let runs = status["tasks"][0]["worker_id"].as_str().unwrap_or_default();
                let victim = (0..cluster.workers.len())
                    .find(|i| {
                        cluster.workers[*i].process.is_some() && cluster.workers[*i].id() == runs
                    })
                    .unwrap_or_else(|| live(&cluster, None));
                cluster.workers[victim].kill_hard();
                killed = Some(victim);
            }
            _ => {
                if let Some(victim) = killed.take() {
                    cluster.workers[victim].restart();
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
    }
    producing.await.expect("producer");
    if let Some(victim) = killed.take() {
        cluster.workers[victim].restart();
    }
    let via = live(&cluster, None);
    cluster.wait_running(via, &pg_name, 3).await;
    cluster.wait_running(via, &s3_name, 3).await;

    // Both groups commit the end of the topic.
    for name in [&pg_name, &s3_name] {
        let (group, t) = (format!("connect-{name}"), topic.clone());
        tokio::task::spawn_blocking(move || {
            wait_for(
                &format!("{group} to commit the end of the topic"),
                Duration::from_secs(180),
                || kafka::caught_up(&group, &t).then_some(()),
            )
        })
        .await
        .expect("caught up");
    }
    stop.store(true, Ordering::Relaxed);
    let logs = || {
        cluster
            .workers
            .iter()
            .map(|w| w.log_text())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_monotonic("postgres-sink", &pg_samples.join().expect("sampler"));
    assert_monotonic("s3-sink", &s3_samples.join().expect("sampler"));

    // Every key's row holds its last update.
    let rows = pg.psql(&db, "SELECT id, seq FROM kv ORDER BY id");
    let expected: Vec<String> = (0..keys)
        .map(|k| format!("{k}|{}", (rounds - 1) * keys + k))
        .collect();
    assert_eq!(rows.lines().collect::<Vec<_>>(), expected, "{}", logs());

    // The archive, read independently: every partition's offsets, each exactly once.
    let ends = {
        let t = topic.clone();
        tokio::task::spawn_blocking(move || kafka::end_offsets(&t))
            .await
            .expect("end offsets")
    };
    let (objects, records) = read_topic_archive(&server, BUCKET, &s3_name, &topic).await;
    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &records {
        by_partition.entry(r.partition).or_default().push(r.offset);
    }
    for p in 0..PARTITIONS {
        let mut offsets = by_partition.remove(&p).unwrap_or_default();
        offsets.sort_unstable();
        let end = ends.get(&p).copied().unwrap_or(0);
        let expected: Vec<i64> = (0..end).collect();
        if offsets != expected {
            let dupes: Vec<i64> = offsets
                .windows(2)
                .filter(|w| w[0] == w[1])
                .map(|w| w[0])
                .collect();
            let missing = expected
                .iter()
                .filter(|o| offsets.binary_search(o).is_err())
                .count();
            panic!(
                "partition {p}: {} archived offsets for {end} records, {} duplicated (first {:?}), {missing} missing; objects {objects:?}\n{}",
                offsets.len(),
                dupes.len(),
                dupes.first(),
                logs()
            );
        }
    }
    // Both groups did move partitions around: every rebalance assigns partitions to a task.
    let text = logs();
    for name in [&pg_name, &s3_name] {
        let needle = format!("task{{connector={name} ");
        let assigned = text
            .lines()
            .filter(|l| l.contains(&needle) && l.contains("partitions assigned"))
            .count();
        assert!(assigned >= 10, "{name}: only {assigned} assignments");
    }
}
