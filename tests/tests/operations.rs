//! Operations: `/metrics` parsed as Prometheus text and checked against what a pipeline moved,
//! health endpoints, automatic restarts of failed tasks (against a real HTTP server that refuses
//! with 401), and log levels changed at runtime through `/admin/loggers`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::cluster::{Cluster, call, wait_async};
use sluice_tests::{kafka, unique};

/// Reads `/metrics` of `url` into `name{labels}` -> value, with a Prometheus text parser.
async fn scrape(url: &str) -> HashMap<String, f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let labels = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            Some((format!("{}{{{labels}}}", s.metric), value))
        })
        .collect()
}

/// The value of `metric` for `connector`'s task 0 (0 when absent).
fn task_value(metrics: &HashMap<String, f64>, metric: &str, connector: &str) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&format!("{metric}{{"))
                && k.contains(&format!("connector={connector},"))
                && k.contains("task=0")
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_a_pipeline_moved_and_health_answers() {
    const COUNT: usize = 600;
    let cluster = Cluster::start(1, "");
    let url = cluster.workers[0].url.clone();
    cluster.wait_healthy().await;
    let (code, body) = call(Method::GET, &format!("{url}/health/live"), None).await;
    assert_eq!((code, &body["status"]), (200, &json!("alive")), "{body}");

    let topic = unique("ops-metrics");
    kafka::create_topic(&topic, 2).await;
    let source = unique("gen");
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{source}/config"),
        Some(
            json!({"connector.class": "datagen", "topic": topic, "count": COUNT, "batch_size": 50}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let file = cluster.path().join("out.jsonl");
    let sink = unique("out");
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{sink}/config"),
        Some(json!({
            "connector.class": "file-sink", "topics": topic, "file": file.display().to_string(),
            "format": "record",
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let lines = || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_async(
        "every record in the file",
        Duration::from_secs(120),
        || async { (lines() >= COUNT).then_some(()) },
    )
    .await;
    // Counters move after the data: wait until they reach it, then compare exactly.
    let metrics = wait_async("the counters to catch up", Duration::from_secs(60), || {
        let url = url.clone();
        let (source, sink) = (source.clone(), sink.clone());
        async move {
            let m = scrape(&url).await;
            let written = task_value(&m, "sluice_source_records_written_total", &source);
            let sent = task_value(&m, "sluice_sink_records_sent_total", &sink);
            let committed = task_value(&m, "sluice_offset_commits_total", &sink);
            (written as usize >= COUNT && sent as usize >= COUNT && committed > 0.0).then_some(m)
        }
    })
    .await;
    assert_eq!(lines(), COUNT, "the file holds each record once");
    let count = COUNT as f64;
    assert_eq!(
        task_value(&metrics, "sluice_source_records_polled_total", &source),
        count
    );
    assert_eq!(
        task_value(&metrics, "sluice_source_records_written_total", &source),
        count
    );
    assert_eq!(
        task_value(&metrics, "sluice_sink_records_read_total", &sink),
        count
    );
    assert_eq!(
        task_value(&metrics, "sluice_sink_records_sent_total", &sink),
        count
    );
    assert_eq!(task_value(&metrics, "sluice_sink_partitions", &sink), 2.0);
    assert_eq!(
        task_value(&metrics, "sluice_task_record_errors_total", &sink),
        0.0
    );
    assert_eq!(
        task_value(&metrics, "sluice_task_restarts_total", &sink),
        0.0
    );
    // Both tasks committed offsets, none failed.
    for connector in [&source, &sink] {
        let ok = metrics
            .iter()
            .filter(|(k, _)| {
                k.starts_with("sluice_offset_commits_total{")
                    && k.contains(&format!("connector={connector},"))
                    && k.contains("result=success")
            })
            .map(|(_, v)| *v)
            .sum::<f64>();
        assert!(ok >= 1.0, "{connector}: no successful offset commit");
        let failed = metrics
            .iter()
            .filter(|(k, _)| {
                k.starts_with("sluice_offset_commits_total{")
                    && k.contains(&format!("connector={connector},"))
                    && k.contains("result=failure")
            })
            .map(|(_, v)| *v)
            .sum::<f64>();
        assert_eq!(failed, 0.0, "{connector}: failed offset commits");
    }
    let worker = cluster.workers[0].id();
    let status = |connector: &str| {
        metrics
            .get(&format!(
                "sluice_task_status{{connector={connector},state=RUNNING,task=0,worker={worker}}}"
            ))
            .copied()
    };
    assert_eq!(status(&source), Some(1.0), "{metrics:?}");
    assert_eq!(status(&sink), Some(1.0));
    assert_eq!(
        metrics.get(&format!("sluice_worker_tasks{{worker={worker}}}")),
        Some(&2.0)
    );
    assert_eq!(
        metrics.get(&format!("sluice_worker_connectors{{worker={worker}}}")),
        Some(&2.0)
    );
    assert!(
        metrics
            .get(&format!(
                "sluice_rebalances_completed_total{{worker={worker}}}"
            ))
            .is_some_and(|n| *n >= 1.0)
    );
    assert_eq!(
        metrics.get(&format!(
            "sluice_worker_task_startup_attempts_total{{worker={worker}}}"
        )),
        Some(&2.0)
    );
}

/// A test HTTP server: answers 401 to its first `refuse_first` requests, then takes records.
struct Server {
    addr: SocketAddr,
    refused: Arc<AtomicU64>,
    ids: Arc<Mutex<BTreeSet<i64>>>,
}

#[derive(Clone)]
struct ServerState {
    refuse_first: u64,
    requests: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    ids: Arc<Mutex<BTreeSet<i64>>>,
}

async fn ingest(State(state): State<ServerState>, body: Bytes) -> (StatusCode, String) {
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    if n < state.refuse_first {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "token expired".into());
    }
    let records: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(Value::Array(items)) => items,
        Ok(one) => vec![one],
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut ids = state.ids.lock().unwrap();
    ids.extend(records.iter().filter_map(|r| r["id"].as_i64()));
    (StatusCode::OK, "ok".into())
}

impl Server {
    fn start(refuse_first: u64) -> Self {
        let state = ServerState {
            refuse_first,
            requests: Arc::default(),
            refused: Arc::default(),
            ids: Arc::default(),
        };
        let refused = state.refused.clone();
        let ids = state.ids.clone();
        let app = Router::new()
            .route("/ingest", post(ingest))
            .with_state(state);
        Self {
            addr: sluice_tests::serve(app),
            refused,
            ids,
        }
    }

    fn ids(&self) -> BTreeSet<i64> {
        self.ids.lock().unwrap().clone()
    }
}

async fn create_http_sink(url: &str, name: &str, topic: &str, server: &Server) {
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{name}/config"),
        Some(json!({
            "connector.class": "http-sink", "topics": topic,
            "url": format!("http://{}/ingest", server.addr),
            "batch_format": "json_array", "batch_max_records": 50, "max_in_flight": 1,
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
        })),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_task_restarts_by_itself_until_the_crash_loop_limit() {
    const COUNT: i64 = 300;
    let mut cluster = Cluster::start(0, "");
    cluster.worker_extra =
        "task_restart:\n  initial_backoff: 200ms\n  max_backoff: 1s\n  max_restarts: 3\n".into();
    cluster.add_worker();
    let url = cluster.workers[0].url.clone();
    cluster.wait_healthy().await;
    let topic = unique("ops-restart");
    kafka::create_topic(&topic, 1).await;
    kafka::produce(
        &kafka::producer(),
        &topic,
        (0..COUNT).map(|i| (format!("k{i}"), json!({"id": i}).to_string())),
    )
    .await;

    // Fails 3 times (401: credentials refused), then the server takes everything.
    let flaky_server = Server::start(3);
    let flaky = unique("flaky");
    create_http_sink(&url, &flaky, &topic, &flaky_server).await;
    // Never accepted.
    let broken_server = Server::start(u64::MAX);
    let broken = unique("broken");
    create_http_sink(&url, &broken, &topic, &broken_server).await;

    wait_async(
        "every record at the flaky server",
        Duration::from_secs(120),
        || async { (flaky_server.ids().len() as i64 >= COUNT).then_some(()) },
    )
    .await;
    assert_eq!(flaky_server.ids(), (0..COUNT).collect::<BTreeSet<_>>());
    assert_eq!(flaky_server.refused.load(Ordering::SeqCst), 3);
    let group = format!("connect-{flaky}");
    wait_async(
        "the flaky sink's offsets at the end",
        Duration::from_secs(60),
        || {
            let (group, topic) = (group.clone(), topic.clone());
            async move { kafka::caught_up(&group, &topic).then_some(()) }
        },
    )
    .await;
    let (_, status) = call(
        Method::GET,
        &format!("{url}/connectors/{flaky}/status"),
        None,
    )
    .await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    assert_eq!(status["tasks"][0]["restarts"], 3, "{status}");

    // The broken one gives up after 3 restarts (4 runs, each refused once) and stays FAILED.
    let status = wait_async(
        "the broken sink FAILED for good",
        Duration::from_secs(120),
        || {
            let url = url.clone();
            let broken = broken.clone();
            async move {
                let (_, s) = call(
                    Method::GET,
                    &format!("{url}/connectors/{broken}/status"),
                    None,
                )
                .await;
                let trace = s["tasks"][0]["trace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (s["tasks"][0]["state"] == "FAILED" && trace.contains("gave up")).then_some(s)
            }
        },
    )
    .await;
    let trace = status["tasks"][0]["trace"].as_str().unwrap();
    assert!(trace.contains("401"), "the reason is in the trace: {trace}");
    assert!(
        trace.contains("gave up after 3 automatic restarts"),
        "{trace}"
    );
    assert_eq!(status["tasks"][0]["restarts"], 3, "{status}");
    assert_eq!(broken_server.refused.load(Ordering::SeqCst), 4);
    assert!(broken_server.ids().is_empty());
    // Nothing was committed for it: its records are all still to be delivered.
    let committed = kafka::committed(&format!("connect-{broken}"), &topic, 1);
    assert!(committed.values().all(|o| *o <= 0), "{committed:?}");

    let metrics = scrape(&url).await;
    assert_eq!(
        task_value(&metrics, "sluice_task_restarts_total", &flaky),
        3.0
    );
    assert_eq!(
        task_value(&metrics, "sluice_task_restarts_total", &broken),
        3.0
    );
    assert_eq!(
        task_value(&metrics, "sluice_sink_records_sent_total", &flaky),
        COUNT as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_levels_change_at_runtime() {
    let cluster = Cluster::start(1, "");
    let url = cluster.workers[0].url.clone();
    cluster.wait_healthy().await;
    let (code, loggers) = call(Method::GET, &format!("{url}/admin/loggers"), None).await;
    assert_eq!(code, 200, "{loggers}");
    assert_eq!(loggers["root"]["level"], "INFO", "{loggers}");
    let debug_lines = || {
        cluster.workers[0]
            .log_text()
            .lines()
            .filter(|l| l.contains("DEBUG") && l.contains("sluice::"))
            .count()
    };
    assert_eq!(debug_lines(), 0, "no DEBUG lines at INFO");

    let (code, changed) = call(
        Method::PUT,
        &format!("{url}/admin/loggers/sluice"),
        Some(json!({"level": "DEBUG"})),
    )
    .await;
    assert_eq!(code, 200, "{changed}");
    assert!(
        changed.as_array().unwrap().contains(&json!("sluice")),
        "{changed}"
    );
    let (_, level) = call(
        Method::GET,
        &format!("{url}/admin/loggers/sluice.herder"),
        None,
    )
    .await;
    assert_eq!(
        level["level"], "DEBUG",
        "a logger below takes the level: {level}"
    );
    let (_, level) = call(Method::GET, &format!("{url}/admin/loggers/hyper"), None).await;
    assert_eq!(level["level"], "INFO", "others keep root's: {level}");

    // The worker logs at DEBUG from now on (a connector created to make it say something).
    let topic = unique("ops-log");
    kafka::create_topic(&topic, 1).await;
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{}/config", unique("gen")),
        Some(json!({"connector.class": "datagen", "topic": topic, "count": 10})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    wait_async(
        "DEBUG lines in the log",
        Duration::from_secs(60),
        || async { (debug_lines() > 0).then_some(()) },
    )
    .await;

    let (code, body) = call(
        Method::PUT,
        &format!("{url}/admin/loggers/sluice"),
        Some(json!({"level": "LOUD"})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("LOUD"),
        "{body}"
    );
}
