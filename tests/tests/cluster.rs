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
    assert_eq!(per_worker.keys().cloned().collect::<BTreeSet<_>>(), ids, "{per_worker:?}");
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
    let after = wait_async("the new worker to run a task", Duration::from_secs(90), || async {
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
    })
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
    assert!(stayed >= 4, "only {stayed} tasks stayed put: {before:?} -> {after:?}");
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
    wait_async("tasks to leave the killed worker", Duration::from_secs(120), || async {
        let (_, s) = call(
            Method::GET,
            &format!("{}/connectors/{topic}/status", cluster.workers[survivor].url),
            None,
        )
        .await;
        let tasks = s["tasks"].as_array()?;
        (tasks.len() == 3
            && tasks
                .iter()
                .all(|t| t["state"] == "RUNNING" && t["worker_id"] != json!(victim_id)))
        .then_some(())
    })
    .await;
    // Every sequence number arrives, at least once.
    let all = wait_async("every sequence number", Duration::from_secs(180), || async {
        let all = seqs(&topic).await;
        let distinct: BTreeSet<u64> = all.iter().copied().collect();
        (distinct.len() as u64 == COUNT).then_some(all)
    })
    .await;
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct, (0..COUNT).collect::<BTreeSet<_>>());
    assert!(all.len() as u64 >= COUNT);
    // Tasks on surviving workers ran once, uninterrupted.
    for (worker, task) in survivors_tasks {
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
