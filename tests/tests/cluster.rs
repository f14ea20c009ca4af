//! Distributed mode with real `sluice worker` processes on one broker: task spreading, a worker
//! killed with SIGKILL, a worker joining, and requests sent to followers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::cluster::{Cluster, call, wait_async};
use sluice_tests::{kafka, unique};

fn datagen(topic: &str, tasks: u32, extra: Value) -> Value {
    let mut config = json!({
        "connector.class": "datagen",
        "tasks.max": tasks.to_string(),
        "topic": topic,
        "batch_size": "50",
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

/// Tasks per worker id in a connector status.
fn tasks_by_worker(status: &Value) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for task in status["tasks"].as_array().expect("tasks") {
        out.entry(task["worker_id"].as_str().expect("worker_id").to_owned())
            .or_default()
            .push(task["id"].as_u64().expect("id"));
    }
    out
}

/// Sequence numbers (the record keys) in a datagen topic.
async fn seqs(topic: &str) -> Vec<u64> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        kafka::read_all(&topic)
            .iter()
            .map(|r| {
                String::from_utf8_lossy(r.key.as_deref().expect("key"))
                    .parse::<u64>()
                    .expect("numeric key")
            })
            .collect()
    })
    .await
    .expect("read topic")
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_share_tasks_evenly_a_joining_worker_moves_only_what_it_takes_and_followers_forward_writes()
 {
    let mut cluster = Cluster::start(3, "");
    cluster.wait_healthy().await;
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (a, b) = (unique("gen-a"), unique("gen-b"));
    for (i, name) in [&a, &b].into_iter().enumerate() {
        kafka::create_topic(name, 3).await;
        // Both creates go to followers: they must be forwarded to the leader.
        let url = format!("{}/connectors", cluster.workers[followers[i]].url);
        let (code, body) = call(
            Method::POST,
            &url,
            Some(json!({"name": name, "config": datagen(name, 3, json!({"rate": "200"}))})),
        )
        .await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["name"], json!(name));
    }
    let status_a = cluster.wait_running(0, &a, 3).await;
    let status_b = cluster.wait_running(0, &b, 3).await;
    // Six tasks over three workers: two each.
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for status in [&status_a, &status_b] {
        for (worker, tasks) in tasks_by_worker(status) {
            *per_worker.entry(worker).or_default() += tasks.len();
        }
    }
    let ids: BTreeSet<String> = cluster.workers.iter().map(|w| w.id()).collect();
    assert_eq!(
        per_worker.keys().cloned().collect::<BTreeSet<_>>(),
        ids,
        "{per_worker:?}"
    );
    assert!(per_worker.values().all(|n| *n == 2), "{per_worker:?}");
    // Every worker sees both connectors (the writes were applied once, by the leader).
    for worker in &cluster.workers {
        let (code, list) = call(Method::GET, &format!("{}/connectors", worker.url), None).await;
        assert_eq!(code, 200);
        let names: BTreeSet<String> = serde_json::from_value(list).expect("names");
        assert_eq!(names, BTreeSet::from([a.clone(), b.clone()]));
    }

    // A fourth worker joins and gets a share; tasks that stay put are never restarted.
    let before: BTreeMap<(String, u64), String> = [(&a, &status_a), (&b, &status_b)]
        .iter()
        .flat_map(|(name, status)| {
            status["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .map(|t| {
                    (
                        ((*name).clone(), t["id"].as_u64().expect("id")),
                        t["worker_id"].as_str().expect("worker").to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let fourth = cluster.add_worker();
    let fourth_id = cluster.workers[fourth].id();
    let after = wait_async(
        "the new worker to run a task",
        Duration::from_secs(90),
        || async {
            let mut all = BTreeMap::new();
            for name in [&a, &b] {
                let (_, status) = call(
                    Method::GET,
                    &format!("{}/connectors/{name}/status", cluster.workers[0].url),
                    None,
                )
                .await;
                for t in status["tasks"].as_array()? {
                    if t["state"] != "RUNNING" {
                        return None;
                    }
                    all.insert(
                        (name.clone(), t["id"].as_u64()?),
                        t["worker_id"].as_str()?.to_owned(),
                    );
                }
            }
            let on_new = all.values().filter(|w| **w == fourth_id).count();
            (all.len() == 6 && on_new >= 1).then_some(all)
        },
    )
    .await;
    let counts: BTreeMap<&String, usize> = after.values().fold(BTreeMap::new(), |mut m, w| {
        *m.entry(w).or_default() += 1;
        m
    });
    assert!(counts.values().all(|n| (1..=2).contains(n)), "{counts:?}");
    let mut stayed = 0;
    for (task, worker) in &after {
        if before.get(task) == Some(worker) {
            stayed += 1;
            let owner = cluster
                .workers
                .iter()
                .find(|w| w.id() == *worker)
                .expect("owner");
            assert_eq!(
                owner.task_starts(&task.0, task.1 as u32),
                1,
                "task {task:?} stayed on {worker} but was restarted"
            );
        }
    }
    assert!(
        stayed >= 4,
        "only {stayed} tasks stayed put: {before:?} -> {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_tasks_move_and_every_sequence_number_arrives() {
    const COUNT: u64 = 12_000;
    let mut cluster = Cluster::start(3, "");
    cluster.wait_healthy().await;
    let topic = unique("gen-kill");
    kafka::create_topic(&topic, 3).await;
    let (code, body) = call(
        Method::POST,
        &format!("{}/connectors", cluster.workers[0].url),
        Some(json!({"name": topic, "config": datagen(&topic, 3, json!({"count": COUNT.to_string(), "rate": "1000"}))})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let status = cluster.wait_running(0, &topic, 3).await;
    // Let some records through, then kill the leader (the hardest worker to lose).
    wait_async("records to flow", Duration::from_secs(60), || async {
        (seqs(&topic).await.len() > 1500).then_some(())
    })
    .await;
    let victim = cluster.leader().await;
    let victim_id = cluster.workers[victim].id();
    let survivors_tasks: Vec<(String, u64)> = tasks_by_worker(&status)
        .into_iter()
        .filter(|(w, _)| *w != victim_id)
        .flat_map(|(w, tasks)| tasks.into_iter().map(move |t| (w.clone(), t)))
        .collect();
    cluster.workers[victim].kill_hard();

    // Its tasks run elsewhere: every task RUNNING on a live worker.
    let survivor = (0..3).find(|i| *i != victim).expect("a survivor");
    wait_async(
        "tasks to leave the killed worker",
        Duration::from_secs(120),
        || async {
            let (_, s) = call(
                Method::GET,
                &format!(
                    "{}/connectors/{topic}/status",
                    cluster.workers[survivor].url
                ),
                None,
            )
            .await;
            let tasks = s["tasks"].as_array()?;
            (tasks.len() == 3
                && tasks
                    .iter()
                    .all(|t| t["state"] == "RUNNING" && t["worker_id"] != json!(victim_id)))
            .then_some(())
        },
    )
    .await;
    // Then a follower dies too: the last worker runs everything (the departed follower's work
    // waits for the scheduled rebalance delay, then moves).
    let last = {
        let leader = cluster.leader().await;
        let follower = (0..3)
            .find(|i| *i != victim && *i != leader)
            .expect("a follower");
        let gone = cluster.workers[follower].id();
        cluster.workers[follower].kill_hard();
        wait_async(
            "tasks to leave the second killed worker",
            Duration::from_secs(120),
            || async {
                let (_, s) = call(
                    Method::GET,
                    &format!("{}/connectors/{topic}/status", cluster.workers[leader].url),
                    None,
                )
                .await;
                let tasks = s["tasks"].as_array()?;
                (tasks.len() == 3
                    && tasks.iter().all(|t| {
                        t["state"] == "RUNNING"
                            && t["worker_id"] == json!(cluster.workers[leader].id())
                    }))
                .then_some(())
            },
        )
        .await;
        assert_ne!(gone, cluster.workers[leader].id());
        cluster.workers[leader].id()
    };
    // Every sequence number arrives, at least once.
    let all = wait_async(
        "every sequence number",
        Duration::from_secs(180),
        || async {
            let all = seqs(&topic).await;
            let distinct: BTreeSet<u64> = all.iter().copied().collect();
            (distinct.len() as u64 == COUNT).then_some(all)
        },
    )
    .await;
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct, (0..COUNT).collect::<BTreeSet<_>>());
    assert!(all.len() as u64 >= COUNT);
    // Tasks on the surviving worker ran once, uninterrupted.
    for (worker, task) in survivors_tasks.into_iter().filter(|(w, _)| *w == last) {
        let owner = cluster
            .workers
            .iter()
            .find(|w| w.id() == worker)
            .expect("owner");
        assert_eq!(
            owner.task_starts(&topic, task as u32),
            1,
            "task {task} on surviving worker {worker} was restarted"
        );
    }
}

async fn status(cluster: &Cluster, name: &str) -> Value {
    call(
        Method::GET,
        &format!("{}/connectors/{name}/status", cluster.workers[0].url),
        None,
    )
    .await
    .1
}

async fn wait_state(
    cluster: &Cluster,
    name: &str,
    connector: &str,
    task: Option<&str>,
    tasks: usize,
) {
    wait_async(
        &format!("{name} to be {connector} with {tasks} tasks"),
        Duration::from_secs(90),
        || async {
            let s = status(cluster, name).await;
            let list = s["tasks"].as_array()?;
            (s["connector"]["state"] == connector
                && list.len() == tasks
                && task.is_none_or(|t| list.iter().all(|x| x["state"] == t)))
            .then_some(())
        },
    )
    .await;
}

/// Waits until the topic stops growing; returns its records' sequence numbers.
async fn settled(topic: &str) -> Vec<u64> {
    let mut last = seqs(topic).await.len();
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = seqs(topic).await;
        if now.len() == last {
            return now;
        }
        last = now.len();
    }
}

async fn put(cluster: &Cluster, path: &str) -> (u16, Value) {
    call(
        Method::PUT,
        &format!("{}{path}", cluster.workers[0].url),
        None,
    )
    .await
}

async fn post(cluster: &Cluster, path: &str) -> (u16, Value) {
    call(
        Method::POST,
        &format!("{}{path}", cluster.workers[0].url),
        None,
    )
    .await
}

fn owner_starts(cluster: &Cluster, status: &Value, name: &str, task: u32) -> usize {
    let worker = status["tasks"][task as usize]["worker_id"]
        .as_str()
        .expect("worker id");
    cluster
        .workers
        .iter()
        .find(|w| w.id() == worker)
        .expect("owner")
        .task_starts(name, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_stop_restart_and_offsets_behave_as_kafka_connect_documents() {
    let cluster = Cluster::start(2, "");
    cluster.wait_healthy().await;
    let name = unique("life");
    kafka::create_topic(&name, 2).await;
    let base = format!("/connectors/{name}");
    let (code, body) = call(
        Method::POST,
        &format!("{}/connectors", cluster.workers[1].url),
        Some(json!({"name": name, "config": datagen(&name, 2, json!({"rate": "400"}))})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    cluster.wait_running(0, &name, 2).await;
    wait_async("records", Duration::from_secs(60), || async {
        (seqs(&name).await.len() > 200).then_some(())
    })
    .await;

    // Active topics: the topic the tasks write to.
    let (code, topics) = call(
        Method::GET,
        &format!("{}{base}/topics", cluster.workers[1].url),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(topics, json!({ name.clone(): {"topics": [name.clone()]} }));

    // Offsets cannot change while the connector runs.
    let (code, body) = call(
        Method::PATCH,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        Some(json!({"offsets": [{"partition": {"task": 0}, "offset": {"seq": 0}}]})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("STOPPED"),
        "{body}"
    );

    // Pause: nothing new arrives while paused.
    assert_eq!(put(&cluster, &format!("{base}/pause")).await.0, 202);
    wait_state(&cluster, &name, "PAUSED", Some("PAUSED"), 2).await;
    let paused = settled(&name).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        seqs(&name).await.len(),
        paused.len(),
        "records arrived while paused"
    );

    // Resume: records flow again.
    assert_eq!(put(&cluster, &format!("{base}/resume")).await.0, 202);
    wait_state(&cluster, &name, "RUNNING", Some("RUNNING"), 2).await;
    wait_async("records after resume", Duration::from_secs(60), || async {
        (seqs(&name).await.len() > paused.len() + 100).then_some(())
    })
    .await;

    // Restart with tasks: 202 with RESTARTING states, and each task really starts again.
    let running = status(&cluster, &name).await;
    let starts: Vec<usize> = (0..2)
        .map(|t| owner_starts(&cluster, &running, &name, t))
        .collect();
    let (code, body) = post(&cluster, &format!("{base}/restart?includeTasks=true")).await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["connector"]["state"], "RESTARTING", "{body}");
    assert!(
        body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .all(|t| t["state"] == "RESTARTING")
    );
    wait_async("tasks restarted", Duration::from_secs(60), || async {
        (0..2)
            .all(|t| owner_starts(&cluster, &running, &name, t) == starts[t as usize] + 1)
            .then_some(())
    })
    .await;
    // onlyFailed with nothing failed restarts nothing; a single-task restart restarts one.
    let (code, body) = post(
        &cluster,
        &format!("{base}/restart?includeTasks=true&onlyFailed=true"),
    )
    .await;
    assert_eq!(code, 202, "{body}");
    assert!(
        body["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .all(|t| t["state"] == "RUNNING"),
        "{body}"
    );
    assert_eq!(
        post(&cluster, &format!("{base}/tasks/1/restart")).await.0,
        204
    );
    wait_async("task 1 restarted", Duration::from_secs(60), || async {
        (owner_starts(&cluster, &running, &name, 1) == starts[1] + 2).then_some(())
    })
    .await;
    assert_eq!(owner_starts(&cluster, &running, &name, 0), starts[0] + 1);
    assert_eq!(
        post(&cluster, &format!("{base}/tasks/7/restart")).await.0,
        404
    );

    // Stop: connector STOPPED, no tasks, nothing new arrives.
    assert_eq!(put(&cluster, &format!("{base}/stop")).await.0, 204);
    wait_state(&cluster, &name, "STOPPED", None, 0).await;
    let stopped = settled(&name).await;
    let (code, offsets) = call(
        Method::GET,
        &format!("{}{base}/offsets", cluster.workers[1].url),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let entries = offsets["offsets"].as_array().expect("offsets");
    assert_eq!(entries.len(), 2, "{offsets}");
    for entry in entries {
        let task = entry["partition"]["task"].as_u64().expect("task");
        let seq = entry["offset"]["seq"].as_u64().expect("seq");
        // The stored offset is the newest record of that task in the topic.
        let newest = stopped.iter().filter(|s| *s % 2 == task).max().copied();
        assert_eq!(Some(seq), newest, "task {task}: {offsets}");
    }

    // PATCH: move task 0 far ahead, forget task 1; after resume both follow the new offsets.
    let (code, body) = call(
        Method::PATCH,
        &format!("{}{base}/offsets", cluster.workers[1].url),
        Some(json!({"offsets": [
            {"partition": {"task": 0}, "offset": {"seq": 1_000_000}},
            {"partition": {"task": 1}, "offset": null},
        ]})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (_, offsets) = call(
        Method::GET,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        None,
    )
    .await;
    assert_eq!(
        offsets["offsets"],
        json!([{"partition": {"task": 0}, "offset": {"seq": 1_000_000}}])
    );
    assert_eq!(put(&cluster, &format!("{base}/resume")).await.0, 202);
    wait_state(&cluster, &name, "RUNNING", Some("RUNNING"), 2).await;
    wait_async(
        "records from the altered offsets",
        Duration::from_secs(60),
        || async {
            let all = seqs(&name).await;
            let task0_jumped = all.contains(&1_000_002);
            let task1_again = all.iter().filter(|s| **s == 1).count() >= 2;
            (task0_jumped && task1_again).then_some(())
        },
    )
    .await;

    // DELETE resets every offset: the connector starts over.
    assert_eq!(put(&cluster, &format!("{base}/stop")).await.0, 204);
    wait_state(&cluster, &name, "STOPPED", None, 0).await;
    let (code, body) = call(
        Method::DELETE,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (_, offsets) = call(
        Method::GET,
        &format!("{}{base}/offsets", cluster.workers[1].url),
        None,
    )
    .await;
    assert_eq!(offsets["offsets"], json!([]));
    let before = seqs(&name).await.iter().filter(|s| **s == 0).count();
    assert_eq!(put(&cluster, &format!("{base}/resume")).await.0, 202);
    wait_async("task 0 to start over", Duration::from_secs(60), || async {
        (seqs(&name).await.iter().filter(|s| **s == 0).count() > before).then_some(())
    })
    .await;

    // Delete: gone from every worker.
    assert_eq!(
        call(
            Method::DELETE,
            &format!("{}{base}", cluster.workers[1].url),
            None
        )
        .await
        .0,
        204
    );
    for worker in &cluster.workers {
        wait_async(
            "the connector to be gone",
            Duration::from_secs(30),
            || async {
                let (code, _) = call(Method::GET, &format!("{}{base}", worker.url), None).await;
                (code == 404).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sink_offsets_are_the_consumer_groups_and_can_be_rewound_while_stopped() {
    let cluster = Cluster::start(1, "");
    cluster.wait_healthy().await;
    let topic = unique("sink-offsets");
    kafka::create_topic(&topic, 2).await;
    let producer = kafka::producer();
    kafka::produce(
        &producer,
        &topic,
        (0..100).map(|i| (format!("k{i}"), format!("v{i}"))),
    )
    .await;
    let file = cluster.path().join("out.jsonl");
    let name = unique("file-sink");
    let base = format!("/connectors/{name}");
    let (code, body) = call(
        Method::PUT,
        &format!("{}{base}/config", cluster.workers[0].url),
        Some(json!({
            "connector.class": "file-sink", "topics": topic, "file": file.display().to_string(),
            "format": "record", "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let lines = |file: &std::path::Path| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
            .collect::<Vec<_>>()
    };
    wait_async("100 lines", Duration::from_secs(90), || async {
        (lines(&file).len() >= 100).then_some(())
    })
    .await;
    assert_eq!(put(&cluster, &format!("{base}/stop")).await.0, 204);
    wait_state(&cluster, &name, "STOPPED", None, 0).await;
    let (_, offsets) = call(
        Method::GET,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        None,
    )
    .await;
    let committed: u64 = offsets["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            assert_eq!(o["partition"]["kafka_topic"], json!(topic));
            o["offset"]["kafka_offset"].as_u64().expect("kafka_offset")
        })
        .sum();
    assert_eq!(committed, 100, "{offsets}");
    // Rewind partition 0 to its start: its records are delivered again after resume.
    let in_p0 = lines(&file).iter().filter(|l| l["partition"] == 0).count();
    let (code, body) = call(
        Method::PATCH,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        Some(json!({"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 0}, "offset": {"kafka_offset": 0}}]})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(put(&cluster, &format!("{base}/resume")).await.0, 202);
    wait_async(
        "partition 0 delivered again",
        Duration::from_secs(90),
        || async { (lines(&file).len() == 100 + in_p0).then_some(()) },
    )
    .await;
    // A null offset resets one partition (its committed offset is deleted): partition 1 is
    // read from its start again.
    assert_eq!(put(&cluster, &format!("{base}/stop")).await.0, 204);
    wait_state(&cluster, &name, "STOPPED", None, 0).await;
    let in_p1 = 100 - in_p0;
    let (code, body) = call(
        Method::PATCH,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        Some(json!({"offsets": [{"partition": {"kafka_topic": topic, "kafka_partition": 1}, "offset": null}]})),
    )
    .await;
    if code == 501 {
        // nisshi has no OffsetDelete: the answer must say so plainly.
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("does not support OffsetDelete"), "{body}");
        eprintln!("skipping the one-partition reset check: {message}");
        return;
    }
    assert_eq!(code, 200, "{body}");
    let (_, offsets) = call(
        Method::GET,
        &format!("{}{base}/offsets", cluster.workers[0].url),
        None,
    )
    .await;
    assert!(
        offsets["offsets"]
            .as_array()
            .expect("offsets")
            .iter()
            .all(|o| o["partition"]["kafka_partition"] != 1),
        "{offsets}"
    );
    assert_eq!(put(&cluster, &format!("{base}/resume")).await.0, 202);
    wait_async(
        "partition 1 delivered again",
        Duration::from_secs(90),
        || async { (lines(&file).len() == 100 + in_p0 + in_p1).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_api_errors_validation_masking_and_config_updates_follow_kafka_connect() {
    let cluster = Cluster::start(1, "");
    cluster.wait_healthy().await;
    let url = cluster.workers[0].url.clone();
    let (code, root) = call(Method::GET, &format!("{url}/"), None).await;
    assert_eq!(code, 200);
    assert!(
        root["version"].is_string() && root["kafka_cluster_id"].is_string(),
        "{root}"
    );

    let (code, body) = call(Method::GET, &format!("{url}/connectors/nope"), None).await;
    assert_eq!(code, 404);
    assert_eq!(
        body,
        json!({"error_code": 404, "message": "Connector nope not found"})
    );

    // A body that is not JSON gets the same error shape.
    let response = reqwest::Client::new()
        .post(format!("{url}/connectors"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json error body");
    assert_eq!(body["error_code"], 400, "{body}");

    // Every mistake is named, in the keys the user wrote.
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": "bad", "config": {"connector.class": "datagen", "tasks.max": "0", "count": "many"}})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    for field in ["tasks.max", "topic", "count"] {
        assert!(message.contains(field), "{field} missing from: {message}");
    }
    assert!(message.contains("3 error(s)"), "{message}");

    // Plugins and validation in Kafka Connect's shapes.
    let (_, plugins) = call(Method::GET, &format!("{url}/connector-plugins"), None).await;
    let plugins = plugins.as_array().expect("plugins");
    assert!(plugins.contains(
        &json!({"class": "datagen", "type": "source", "version": env!("CARGO_PKG_VERSION")})
    ));
    assert!(
        plugins
            .iter()
            .any(|p| p["class"] == "file-sink" && p["type"] == "sink")
    );
    let (code, validation) = call(
        Method::PUT,
        &format!("{url}/connector-plugins/datagen/config/validate"),
        Some(json!({"connector.class": "datagen", "topic": "t", "rate": "-1"})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(validation["error_count"], 1, "{validation}");
    let rate = validation["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .find(|c| c["value"]["name"] == "rate")
        .expect("rate");
    assert_eq!(
        rate["value"]["errors"].as_array().map(Vec::len),
        Some(1),
        "{rate}"
    );

    // A secret never comes back; a connector that cannot start is FAILED with the reason.
    let name = unique("cdc");
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": name, "config": {
            "connector.class": "postgres-cdc", "url": "postgres://sluice@127.0.0.1:1/none",
            "password": "s3cret-value", "tables": "public.t", "topic.prefix": "x",
        }})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["config"]["password"], "[hidden]");
    let (_, config) = call(
        Method::GET,
        &format!("{url}/connectors/{name}/config"),
        None,
    )
    .await;
    assert_eq!(config["password"], "[hidden]");
    assert!(!config.to_string().contains("s3cret-value"));
    let failed = wait_async(
        "the CDC connector to fail",
        Duration::from_secs(60),
        || async {
            let (_, s) = call(
                Method::GET,
                &format!("{url}/connectors/{name}/status"),
                None,
            )
            .await;
            (s["connector"]["state"] == "FAILED").then_some(s)
        },
    )
    .await;
    let trace = failed["connector"]["trace"].as_str().expect("trace");
    assert!(
        !trace.is_empty() && !trace.contains("s3cret-value"),
        "{trace}"
    );
    assert!(
        !cluster.workers[0].log_text().contains("s3cret-value"),
        "the secret was logged"
    );

    // Duplicates conflict; PUT config updates and the new task count takes effect.
    let generator = unique("gen");
    let create =
        json!({"name": generator, "config": datagen(&generator, 1, json!({"rate": "10"}))});
    assert_eq!(
        call(
            Method::POST,
            &format!("{url}/connectors"),
            Some(create.clone())
        )
        .await
        .0,
        201
    );
    let (code, body) = call(Method::POST, &format!("{url}/connectors"), Some(create)).await;
    assert_eq!(code, 409, "{body}");
    cluster.wait_running(0, &generator, 1).await;
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{generator}/config"),
        Some(datagen(&generator, 2, json!({"rate": "10"}))),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    cluster.wait_running(0, &generator, 2).await;
    let (_, tasks) = call(
        Method::GET,
        &format!("{url}/connectors/{generator}/tasks"),
        None,
    )
    .await;
    assert_eq!(tasks.as_array().map(Vec::len), Some(2), "{tasks}");
    assert_eq!(tasks[1]["id"], json!({"connector": generator, "task": 1}));
    let (_, expanded) = call(
        Method::GET,
        &format!("{url}/connectors?expand=status&expand=info"),
        None,
    )
    .await;
    assert_eq!(expanded[&generator]["info"]["type"], "source", "{expanded}");
    assert_eq!(
        expanded[&generator]["status"]["tasks"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(expanded[&name]["status"]["connector"]["state"], "FAILED");
}

fn cli(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(sluice_tests::sluice_bin())
        .arg("connectors")
        .args(["--url", url])
        .args(args)
        .output()
        .expect("run sluice connectors");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_applies_a_pipeline_file_to_a_running_cluster() {
    let cluster = Cluster::start(1, "");
    cluster.wait_healthy().await;
    let url = cluster.workers[0].url.clone();
    let name = unique("cli");
    let file = cluster.path().join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "name: {name}\nconnector: datagen\ntasks: 2\nconfig:\n  topic: {name}\n  rate: 50\n  batch_size: ${{env:SLUICE_TEST_BATCH:-7}}\n"
        ),
    )
    .expect("write pipeline");
    let path = file.display().to_string();
    let (ok, out, err) = cli(&url, &["--output", "json", "apply", "-f", &path]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json"),
        json!([{"name": name, "result": "created"}])
    );
    cluster.wait_running(0, &name, 2).await;
    // The placeholder is stored as written and resolved by the worker.
    let (_, config) = call(
        Method::GET,
        &format!("{url}/connectors/{name}/config"),
        None,
    )
    .await;
    assert_eq!(config["batch_size"], "${env:SLUICE_TEST_BATCH:-7}");
    let (_, tasks) = call(Method::GET, &format!("{url}/connectors/{name}/tasks"), None).await;
    assert_eq!(tasks[0]["config"]["batch_size"], 7, "{tasks}");

    let (ok, out, _) = cli(&url, &["list"]);
    assert!(
        ok && out.contains(&name) && out.contains("tasks 2/2 running"),
        "{out}"
    );
    let (ok, out, _) = cli(&url, &["--output", "json", "status", &name]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["connector"]["state"],
        "RUNNING"
    );
    let (ok, _, err) = cli(&url, &["create", "-f", &path]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, out, _) = cli(&url, &["apply", "-f", &path]);
    assert!(ok && out.contains(&format!("updated {name}")), "{out}");
    let (ok, _, _) = cli(&url, &["delete", &name]);
    assert!(ok);
    let (ok, _, err) = cli(&url, &["status", &name]);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_kafka_connect_client_drives_the_api_unchanged() {
    let root = sluice_tests::repo_root();
    let install = std::process::Command::new("bash")
        .arg(root.join("scripts/install-pytools.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run install-pytools.sh");
    assert!(
        install.status.success(),
        "scripts/install-pytools.sh failed"
    );
    let python = String::from_utf8(install.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let cluster = Cluster::start(2, "");
    cluster.wait_healthy().await;
    let name = unique("py");
    kafka::create_topic(&name, 2).await;
    // Through a follower, so forwarding is exercised by an unmodified client too.
    let leader = cluster.leader().await;
    let url = cluster.workers[1 - leader].url.clone();
    let script = root.join("tests/python/connect_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args([&url, &name, &name])
        .output()
        .await
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn standalone_mode_serves_the_same_api_with_writes_in_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let worker =
        sluice_tests::write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let from_file = unique("standalone-file");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {from_file}\nconnector: datagen\nconfig: {{topic: {from_file}, rate: 20}}\n"
        ),
    )
    .expect("write pipeline");
    let mut sluice = sluice_tests::Sluice::run(dir.path(), &worker, &[&pipeline]);
    let url = format!("http://127.0.0.1:{port}");
    wait_async(
        "the standalone REST API",
        Duration::from_secs(60),
        || async {
            let r = reqwest::get(format!("{url}/connectors/{from_file}/status"))
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    let by_rest = unique("standalone-rest");
    kafka::create_topic(&by_rest, 1).await;
    let routed = format!("{by_rest}-routed");
    kafka::create_topic(&routed, 1).await;
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(
            json!({"name": by_rest, "config": datagen(&by_rest, 2, json!({
                "count": "300",
                // Kafka Connect's flat transform form.
                "transforms": "route",
                "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
                "transforms.route.regex": "(.*)",
                "transforms.route.replacement": "$1-routed",
            }))}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    wait_async(
        "300 records from the REST-created connector",
        Duration::from_secs(60),
        || async { (seqs(&routed).await.len() == 300).then_some(()) },
    )
    .await;
    assert!(seqs(&by_rest).await.is_empty(), "records were not routed");
    let (_, list) = call(Method::GET, &format!("{url}/connectors"), None).await;
    let names: BTreeSet<String> = serde_json::from_value(list).expect("names");
    assert_eq!(names, BTreeSet::from([from_file.clone(), by_rest.clone()]));
    let (_, status) = call(
        Method::GET,
        &format!("{url}/connectors/{by_rest}/status"),
        None,
    )
    .await;
    assert_eq!(
        status["tasks"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(
        status["tasks"][0]["worker_id"],
        json!(format!("127.0.0.1:{port}"))
    );
    // Source offsets of a REST-created connector land in the worker's offsets file.
    assert_eq!(
        put_at(&url, &format!("/connectors/{by_rest}/stop")).await,
        204
    );
    let (_, offsets) = call(
        Method::GET,
        &format!("{url}/connectors/{by_rest}/offsets"),
        None,
    )
    .await;
    assert_eq!(
        offsets["offsets"].as_array().map(Vec::len),
        Some(2),
        "{offsets}"
    );
    let file = std::fs::read_to_string(dir.path().join("offsets.json")).expect("offsets file");
    assert!(file.contains(&by_rest), "{file}");
    assert!(sluice.is_running());
    assert!(sluice.terminate(), "standalone did not stop cleanly");
}

async fn put_at(url: &str, path: &str) -> u16 {
    call(Method::PUT, &format!("{url}{path}"), None).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_refuses_an_internal_topic_that_is_not_compacted() {
    let mut cluster = Cluster::start(0, "");
    // The status topic exists already with the broker's default policy (delete).
    let status_topic = format!("{}-status", cluster.group);
    kafka::create_topic(&status_topic, 1).await;
    let worker = cluster.add_worker();
    let process = cluster.workers[worker].process.as_mut().expect("process");
    assert!(
        !process.wait_exit(Duration::from_secs(60)),
        "the worker should refuse to start"
    );
    let log = cluster.workers[worker].log_text();
    assert!(
        log.contains(&status_topic)
            && log.contains("cleanup.policy unset (the broker's default, delete)")
            && log.contains("must be compacted"),
        "{log}"
    );
}

/// `compact,delete` is compacted, but its retention would still delete configs and offsets that
/// were never overwritten: refused like an uncompacted topic, naming the topic and the policy.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_refuses_an_internal_topic_that_is_compact_and_delete() {
    let mut cluster = Cluster::start(0, "");
    let offsets_topic = format!("{}-offsets", cluster.group);
    kafka::create_topic_with(&offsets_topic, 5, &[("cleanup.policy", "compact,delete")]).await;
    let worker = cluster.add_worker();
    let process = cluster.workers[worker].process.as_mut().expect("process");
    assert!(
        !process.wait_exit(Duration::from_secs(60)),
        "the worker should refuse to start"
    );
    let log = cluster.workers[worker].log_text();
    assert!(
        log.contains(&format!(
            "topic {offsets_topic} exists with cleanup.policy =compact,delete"
        )) && log.contains("cleanup.policy=compact exactly"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_topic_never_holds_masked_or_resolved_secrets() {
    let cluster = Cluster::start(1, "");
    cluster.wait_healthy().await;
    let url = cluster.workers[0].url.clone();
    let configs_topic = format!("{}-configs", cluster.group);
    // Written back masked: the stored secret stays.
    let cdc = unique("cdc-secret");
    let config = json!({
        "connector.class": "postgres-cdc", "url": "postgres://sluice@127.0.0.1:1/none",
        "password": "first-secret", "topic.prefix": "x",
    });
    assert_eq!(
        call(
            Method::PUT,
            &format!("{url}/connectors/{cdc}/config"),
            Some(config)
        )
        .await
        .0,
        201
    );
    let (_, shown) = call(Method::GET, &format!("{url}/connectors/{cdc}/config"), None).await;
    assert_eq!(shown["password"], "[hidden]");
    let mut edited = shown.clone();
    edited["topic.prefix"] = json!("y");
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{cdc}/config"),
        Some(edited),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A task config keeps the placeholder, resolved only when the task starts.
    let generator = unique("gen-placeholder");
    let resolved_topic = format!("{generator}-resolved");
    kafka::create_topic(&resolved_topic, 1).await;
    let config = datagen(
        &format!("${{env:SLUICE_TEST_UNSET_VARIABLE:-{resolved_topic}}}"),
        1,
        json!({"count": "20"}),
    );
    assert_eq!(
        call(
            Method::POST,
            &format!("{url}/connectors"),
            Some(json!({"name": generator, "config": config}))
        )
        .await
        .0,
        201
    );
    wait_async(
        "20 records in the resolved topic",
        Duration::from_secs(60),
        || async { (seqs(&resolved_topic).await.len() == 20).then_some(()) },
    )
    .await;
    let records = {
        let topic = configs_topic.clone();
        tokio::task::spawn_blocking(move || kafka::read_all(&topic))
            .await
            .expect("read configs")
    };
    let latest_cdc = records
        .iter()
        .rfind(|r| r.key.as_deref() == Some(format!("connector-{cdc}").as_bytes()))
        .expect("cdc config record")
        .value_text();
    assert!(
        latest_cdc.contains("first-secret") && !latest_cdc.contains("[hidden]"),
        "{latest_cdc}"
    );
    let task = records
        .iter()
        .rfind(|r| r.key.as_deref() == Some(format!("task-{generator}-0").as_bytes()))
        .expect("task config record")
        .value_text();
    assert!(
        task.contains("${env:SLUICE_TEST_UNSET_VARIABLE:-"),
        "{task}"
    );
    assert!(!task.contains(&format!("\"{resolved_topic}\"")), "{task}");
}

/// Deleting a connector tombstones its task configs and their commit record. A worker that
/// reads the config topic after compaction (which keeps each key's newest record, tombstones
/// included, in the order written) must not hand a connector created again under the same name
/// the task configs of the deleted one. Compaction runs on the broker's own timer, so the test
/// builds that compacted topic itself from what a plain consumer reads off the real one.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_and_recreated_connector_runs_only_its_new_task_configs() {
    let cluster = Cluster::start(1, "");
    cluster.wait_healthy().await;
    let url = cluster.workers[0].url.clone();
    let name = unique("recreated");
    let (old_topic, new_topic) = (format!("{name}-old"), format!("{name}-new"));
    kafka::create_topic(&old_topic, 1).await;
    kafka::create_topic(&new_topic, 1).await;
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": name, "config": datagen(&old_topic, 3, json!({"count": "30"}))})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    cluster.wait_running(0, &name, 3).await;
    let (code, body) = call(Method::DELETE, &format!("{url}/connectors/{name}"), None).await;
    assert_eq!(code, 204, "{body}");
    let status_url = format!("{url}/connectors/{name}/status");
    wait_async(
        "the connector to be gone",
        Duration::from_secs(60),
        || async {
            let (code, _) = call(Method::GET, &status_url, None).await;
            (code == 404).then_some(())
        },
    )
    .await;
    // Created again, stopped: nothing generates task configs for it yet.
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({
            "name": name,
            "config": datagen(&new_topic, 1, json!({"count": "10"})),
            "initial_state": "STOPPED",
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");

    let configs_topic = format!("{}-configs", cluster.group);
    let records = tokio::task::spawn_blocking(move || kafka::read_all(&configs_topic))
        .await
        .expect("read the config topic");
    let keys_of = |r: &kafka::Read| {
        String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()
    };
    let tombstones: BTreeSet<String> = records
        .iter()
        .filter(|r| r.value.is_none())
        .map(keys_of)
        .collect();
    for key in (0..3)
        .map(|t| format!("task-{name}-{t}"))
        .chain([format!("commit-{name}"), format!("connector-{name}")])
    {
        assert!(
            tombstones.contains(&key),
            "no tombstone for {key}: {tombstones:?}"
        );
    }
    let compacted: Vec<&kafka::Read> = records
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            let key = keys_of(r);
            records[i + 1..].iter().all(|later| keys_of(later) != key)
        })
        .map(|(_, r)| r)
        .collect();

    // A fresh worker on a config topic holding exactly what compaction leaves.
    let mut fresh = Cluster::start(0, "");
    let fresh_configs = format!("{}-configs", fresh.group);
    kafka::create_topic_with(&fresh_configs, 1, &[("cleanup.policy", "compact")]).await;
    let producer = kafka::producer();
    for record in compacted {
        let key = record.key.clone().unwrap_or_default();
        let mut out = rdkafka::producer::FutureRecord::to(&fresh_configs).key(&key);
        if let Some(value) = &record.value {
            out = out.payload(value);
        }
        producer
            .send(out, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .expect("copy a config record");
    }
    fresh.add_worker();
    fresh.wait_healthy().await;
    let fresh_url = fresh.workers[0].url.clone();
    let (code, tasks) = call(
        Method::GET,
        &format!("{fresh_url}/connectors/{name}/tasks"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{tasks}");
    assert_eq!(
        tasks,
        json!([]),
        "the stopped connector inherited the deleted one's task configs"
    );
    let (code, body) = call(
        Method::PUT,
        &format!("{fresh_url}/connectors/{name}/resume"),
        None,
    )
    .await;
    assert_eq!(code, 202, "{body}");
    fresh.wait_running(0, &name, 1).await;
    let (_, tasks) = call(
        Method::GET,
        &format!("{fresh_url}/connectors/{name}/tasks"),
        None,
    )
    .await;
    let list = tasks.as_array().expect("task list");
    assert_eq!(list.len(), 1, "{tasks}");
    assert_eq!(list[0]["config"]["topic"], json!(new_topic), "{tasks}");
    wait_async(
        "the new task's 10 records",
        Duration::from_secs(60),
        || async { (seqs(&new_topic).await.len() == 10).then_some(()) },
    )
    .await;
}
