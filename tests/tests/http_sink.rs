//! `http-sink` against a real HTTP server run by the test (axum on 127.0.0.1): flaky answers
//! (503s, slow answers, 400 for marked records) and an outage. Asserts on what the server
//! received, the dead-letter topic and the committed offsets.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value as Json;
use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

/// Marks a record the server refuses with 400.
const MARKER: &str = "REJECT-ME";

/// How the test server behaves.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Percent of requests answered 503 (chosen by a hash of the request number).
    fail_percent: u64,
    /// Percent of requests answered only after 300 ms.
    slow_percent: u64,
    /// The first this many requests are answered 503 with `Retry-After: 1`.
    down_first: u64,
}

#[derive(Default)]
struct Received {
    /// Records of accepted requests, in the order the server accepted them.
    records: Vec<Json>,
    statuses: BTreeMap<u16, u64>,
    content_types: BTreeSet<String>,
    authorization: BTreeSet<String>,
}

struct ServerState {
    behaviour: Behaviour,
    requests: AtomicU64,
    received: Mutex<Received>,
}

/// splitmix64: a deterministic pseudo-random number per request.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn ingest(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    let b = state.behaviour;
    let roll = mix(n) % 100;
    let mut out = HeaderMap::new();
    let answer = |status: StatusCode| {
        *state
            .received
            .lock()
            .unwrap()
            .statuses
            .entry(status.as_u16())
            .or_default() += 1;
        status
    };
    if n < b.down_first {
        out.insert("retry-after", "1".parse().unwrap());
        return (
            answer(StatusCode::SERVICE_UNAVAILABLE),
            out,
            "warming up".into(),
        );
    }
    if roll < b.fail_percent {
        // Every other one says when to come back (now), to exercise Retry-After.
        if n % 2 == 0 {
            out.insert("retry-after", "0".parse().unwrap());
        }
        return (
            answer(StatusCode::SERVICE_UNAVAILABLE),
            out,
            "try later".into(),
        );
    }
    if roll < b.fail_percent + b.slow_percent {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = String::from_utf8_lossy(&body);
    if text.contains(MARKER) {
        return (
            answer(StatusCode::BAD_REQUEST),
            out,
            format!("record refused: contains {MARKER}"),
        );
    }
    let records: Vec<Json> = match serde_json::from_str::<Json>(&text) {
        Ok(Json::Array(items)) => items,
        Ok(one) => vec![one],
        // NDJSON
        Err(_) => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).expect("an NDJSON line"))
            .collect(),
    };
    let mut received = state.received.lock().unwrap();
    received.records.extend(records);
    if let Some(ct) = headers.get("content-type") {
        received
            .content_types
            .insert(ct.to_str().unwrap_or_default().to_owned());
    }
    if let Some(auth) = headers.get("authorization") {
        received
            .authorization
            .insert(auth.to_str().unwrap_or_default().to_owned());
    }
    drop(received);
    (answer(StatusCode::OK), out, "ok".into())
}

/// A test HTTP server on its own runtime (the test thread blocks while waiting).
struct TestServer {
    state: Arc<ServerState>,
    addr: SocketAddr,
}

impl TestServer {
    /// Serves on `addr` (port 0: any free port).
    fn start(addr: SocketAddr, behaviour: Behaviour) -> Self {
        let state = Arc::new(ServerState {
            behaviour,
            requests: AtomicU64::new(0),
            received: Mutex::new(Received::default()),
        });
        let listener = std::net::TcpListener::bind(addr).expect("bind the test server");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new()
            .route("/ingest/{topic}", post(ingest))
            .with_state(state.clone());
        sluice_tests::serve_on(listener, app);
        Self { state, addr }
    }

    fn records(&self) -> Vec<Json> {
        self.state.received.lock().unwrap().records.clone()
    }

    fn distinct_ids(&self) -> BTreeSet<i64> {
        self.records()
            .iter()
            .map(|r| r["id"].as_i64().expect("id"))
            .collect()
    }
}

/// The test records: `total` JSON values with an id, a key among `keys`, the key's sequence
/// number, and the marker on every `reject_every`-th; keyed by their key.
fn records(total: usize, keys: usize, reject_every: usize) -> Vec<(String, String)> {
    (0..total)
        .map(|i| {
            let key = format!("k{}", i % keys);
            let mut value = serde_json::json!({"id": i, "key": key, "seq": i / keys});
            if reject_every > 0 && i % reject_every == 7 {
                value["note"] = Json::from(MARKER);
            }
            (key, value.to_string())
        })
        .collect()
}

fn write_pipeline(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn flaky_server_gets_every_good_record_in_key_order_and_the_dlq_gets_the_rejected() {
    const TOTAL: usize = 5_000;
    const KEYS: usize = 12;
    const REJECT_EVERY: usize = 97;
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("http-flaky");
    let dlq = format!("{topic}-dlq");
    kafka::create_topic(&topic, 3).await;
    kafka::create_topic(&dlq, 1).await;
    let produced = records(TOTAL, KEYS, REJECT_EVERY);
    let rejected: BTreeSet<i64> = (0..TOTAL)
        .filter(|i| i % REJECT_EVERY == 7)
        .map(|i| i as i64)
        .collect();
    kafka::produce(&kafka::producer(), &topic, produced).await;

    let server = TestServer::start(
        "127.0.0.1:0".parse().unwrap(),
        Behaviour {
            fail_percent: 20,
            slow_percent: 10,
            down_first: 0,
        },
    );
    let name = format!("{topic}-sink");
    let worker = write_worker(dir.path(), "");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name: {name}\nconnector: http-sink\nconfig:\n  topics: [{topic}]\n  url: http://{}/ingest/${{topic}}\n  \
             batch_format: json_array\n  batch_max_records: 40\n  linger: 20ms\n  max_in_flight: 4\n  \
             retry_backoff: 20ms\n  retry_max_backoff: 200ms\n  auth_type: bearer\n  auth_token: t0ken\n\
             key_converter: {{type: string}}\nvalue_converter: {{type: json, schemas: false}}\n\
             errors: {{tolerance: all, dlq_topic: {dlq}}}\n",
            server.addr
        ),
    );
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let good = TOTAL - rejected.len();
    wait_for(
        "every good record at the server",
        Duration::from_secs(300),
        || (server.distinct_ids().len() >= good).then_some(()),
    );
    let dead = wait_for(
        "the rejected records in the DLQ",
        Duration::from_secs(60),
        || {
            let dead = kafka::read_all(&dlq);
            (dead.len() >= rejected.len()).then_some(dead)
        },
    );
    let group = format!("connect-{name}");
    wait_for(
        "committed offsets at the end",
        Duration::from_secs(60),
        || kafka::caught_up(&group, &topic).then_some(()),
    );
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    // Every record the server did not refuse arrived, and none it refused.
    let ids = server.distinct_ids();
    let expected: BTreeSet<i64> = (0..TOTAL as i64)
        .filter(|i| !rejected.contains(i))
        .collect();
    assert_eq!(ids, expected, "the server holds exactly the good records");

    // Per key, first arrivals come in sequence order.
    let mut seen = BTreeSet::new();
    let mut last_seq: HashMap<String, i64> = HashMap::new();
    for r in server.records() {
        let id = r["id"].as_i64().unwrap();
        if !seen.insert(id) {
            continue;
        }
        let key = r["key"].as_str().unwrap().to_owned();
        let seq = r["seq"].as_i64().unwrap();
        if let Some(before) = last_seq.insert(key.clone(), seq) {
            assert!(
                seq > before,
                "key {key}: record seq {seq} arrived after seq {before}"
            );
        }
    }

    // The server really was flaky and the sink really batched.
    let received = server.state.received.lock().unwrap();
    assert!(
        received.statuses.get(&503).copied().unwrap_or(0) > 10,
        "{:?}",
        received.statuses
    );
    assert!(received.statuses.get(&400).copied().unwrap_or(0) >= rejected.len() as u64);
    assert_eq!(
        received.content_types,
        BTreeSet::from(["application/json".to_owned()])
    );
    assert_eq!(
        received.authorization,
        BTreeSet::from(["Bearer t0ken".to_owned()])
    );
    let requests = received.statuses.get(&200).copied().unwrap_or(0);
    assert!(
        (requests as usize) < good / 2,
        "{requests} accepted requests for {good} records: not batched"
    );
    drop(received);

    // The DLQ holds exactly the rejected records, with their context.
    assert_eq!(
        dead.len(),
        rejected.len(),
        "one dead letter per rejected record"
    );
    let originals: HashMap<i64, (i32, i64)> = kafka::read_all(&topic)
        .iter()
        .map(|r| {
            let v: Json = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            (v["id"].as_i64().unwrap(), (r.partition, r.offset))
        })
        .collect();
    let mut dead_ids = BTreeSet::new();
    for d in &dead {
        let value: Json = serde_json::from_slice(d.value.as_deref().expect("value")).expect("JSON");
        let id = value["id"].as_i64().expect("id");
        dead_ids.insert(id);
        assert_eq!(value["note"], MARKER);
        assert_eq!(
            d.key.as_deref(),
            Some(format!("k{}", id as usize % KEYS).as_bytes())
        );
        let headers: HashMap<&str, String> = d
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        let (partition, offset) = originals[&id];
        assert_eq!(headers["__connect.errors.topic"], topic);
        assert_eq!(headers["__connect.errors.partition"], partition.to_string());
        assert_eq!(headers["__connect.errors.offset"], offset.to_string());
        assert_eq!(headers["__connect.errors.connector.name"], name);
        assert_eq!(headers["__connect.errors.task.id"], "0");
        assert_eq!(headers["__connect.errors.stage"], "TASK_PUT");
        let message = &headers["__connect.errors.exception.message"];
        assert!(message.contains("HTTP 400"), "{message}");
        assert!(
            message.contains(MARKER),
            "the server's answer is quoted: {message}"
        );
        assert!(!message.contains("t0ken"), "a credential leaked: {message}");
    }
    assert_eq!(dead_ids, rejected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_then_recovery_loses_nothing_and_offsets_reach_the_end() {
    const TOTAL: usize = 3_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("http-outage");
    kafka::create_topic(&topic, 2).await;
    kafka::produce(&kafka::producer(), &topic, records(TOTAL, 7, 0)).await;

    // Nothing listens on the port at first: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr");
    let name = format!("{topic}-sink");
    let worker = write_worker(dir.path(), "");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name: {name}\nconnector: http-sink\nconfig:\n  topics: [{topic}]\n  url: http://{addr}/ingest/${{topic}}\n  \
             batch_format: ndjson\n  batch_max_records: 100\n  max_in_flight: 3\n  \
             retry_backoff: 50ms\n  retry_max_backoff: 500ms\n  request_timeout: 5s\n\
             key_converter: {{type: string}}\nvalue_converter: {{type: json, schemas: false}}\n"
        ),
    );
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let group = format!("connect-{name}");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        kafka::committed(&group, &topic, 2)
            .values()
            .all(|o| *o == 0),
        "nothing may be committed while the server is down"
    );

    // The server comes back, answering 503 (Retry-After: 1) to its first 20 requests.
    let server = TestServer::start(
        addr,
        Behaviour {
            down_first: 20,
            ..Behaviour::default()
        },
    );
    wait_for(
        "every record at the server",
        Duration::from_secs(180),
        || (server.distinct_ids().len() >= TOTAL).then_some(()),
    );
    wait_for(
        "committed offsets at the end",
        Duration::from_secs(60),
        || kafka::caught_up(&group, &topic).then_some(()),
    );
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let ids = server.distinct_ids();
    assert_eq!(ids.len(), TOTAL, "count of distinct ids == produced");
    assert_eq!(ids, (0..TOTAL as i64).collect::<BTreeSet<_>>());
    let received = server.state.received.lock().unwrap();
    assert_eq!(received.statuses.get(&503).copied(), Some(20));
    assert_eq!(
        received.content_types,
        BTreeSet::from(["application/x-ndjson".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tolerance_a_rejected_record_fails_the_task_with_the_reason_and_no_secret() {
    const TOTAL: usize = 600;
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("http-none");
    kafka::create_topic(&topic, 1).await;
    // One marked record: id 407, at offset 407 of the only partition.
    let produced: Vec<(String, String)> = records(TOTAL, 5, 0)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            if i == 407 {
                let mut value: Json = serde_json::from_str(&v).unwrap();
                value["note"] = Json::from(MARKER);
                (k, value.to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    kafka::produce(&kafka::producer(), &topic, produced).await;
    let server = TestServer::start("127.0.0.1:0".parse().unwrap(), Behaviour::default());
    let name = format!("{topic}-sink");
    let worker = write_worker(dir.path(), "");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            "name: {name}\nconnector: http-sink\nconfig:\n  topics: [{topic}]\n  url: http://{}/ingest/${{topic}}?api_key=qu3ry-s3cret\n  \
             batch_format: json_array\n  batch_max_records: 25\n  auth_type: basic\n  auth_username: app\n  auth_password: pa55word\n\
             key_converter: {{type: string}}\nvalue_converter: {{type: json, schemas: false}}\n",
            server.addr
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    assert!(
        !sluice.wait_exit(Duration::from_secs(120)),
        "standalone exits with an error once its only task failed"
    );
    let log = sluice.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("HTTP 400"))
        .unwrap_or_else(|| panic!("no HTTP 400 in the log:\n{log}"));
    assert!(
        failure.contains(&format!("POST http://{}/ingest/{topic}", server.addr)),
        "{failure}"
    );
    assert!(failure.contains("offset 407"), "{failure}");
    assert!(failure.contains("record refused: contains"), "{failure}");
    for secret in ["pa55word", "qu3ry-s3cret", "YXBwOnBhNTV3b3Jk"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
    // Nothing at or after the rejected record was committed; the server never got it.
    let committed = kafka::committed(&format!("connect-{name}"), &topic, 1);
    assert!(committed.get(&0).is_none_or(|o| *o <= 407), "{committed:?}");
    assert!(!server.distinct_ids().contains(&407));
}
