//! REST security with real `sluice worker` processes: token and basic roles, rotation, signed
//! forwarding, mTLS; secrets kept out of REST answers, logs and the internal topics; Kafka SASL
//! (SCRAM) against a broker that requires it; an open non-loopback listener refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::cluster::wait_async;
use sluice_tests::{Sluice, bootstrap, free_port, kafka, sluice_bin, unique, wait_for};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef";
const WORKER_SECRET: &str = "worker-secret-0123456789abcdef-0123456789";

/// Workers of one group whose `rest:` block holds `rest` (extra lines, two-space indented).
struct Group {
    dir: tempfile::TempDir,
    group: String,
    workers: Vec<(Sluice, String)>,
}

impl Group {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            group: unique("secure"),
            workers: Vec::new(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn worker_file(&self, name: &str, listen: &str, rest: &str) -> PathBuf {
        let group = &self.group;
        let file = self.path().join(format!("{name}.yaml"));
        std::fs::write(
            &file,
            format!(
                "bootstrap_servers: {}\noffset_flush_interval: 200ms\nshutdown_timeout: 20s\n\
                 cluster:\n  group_id: {group}\n  config_topic: {group}-configs\n  offsets_topic: {group}-offsets\n  \
                 status_topic: {group}-status\n  offsets_partitions: 2\n  status_partitions: 1\n  heartbeat_interval: 1s\n  \
                 session_timeout: 6s\nrest:\n  listen: {listen}\n{rest}",
                bootstrap(),
            ),
        )
        .expect("write worker file");
        file
    }

    fn start(&mut self, scheme: &str, rest: &str) {
        self.start_with_env(scheme, rest, &[]);
    }

    /// A worker with extra environment variables; `rest` may end with top-level blocks.
    fn start_with_env(&mut self, scheme: &str, rest: &str, env: &[(&str, &str)]) {
        let name = format!("worker-{}", self.workers.len());
        let port = free_port();
        let file = self.worker_file(&name, &format!("127.0.0.1:{port}"), rest);
        let process = Sluice::worker_with_env(self.path(), &name, &file, env);
        self.workers
            .push((process, format!("{scheme}://127.0.0.1:{port}")));
    }

    fn url(&self, i: usize) -> &str {
        &self.workers[i].1
    }

    fn logs(&self) -> String {
        self.workers.iter().map(|(p, _)| p.log_text()).collect()
    }

    async fn wait_healthy(&self, http: &reqwest::Client) {
        for (_, url) in &self.workers {
            let url = format!("{url}/health");
            wait_async("a worker to join", Duration::from_secs(90), || async {
                let r = http.get(&url).send().await.ok()?;
                r.status().is_success().then_some(())
            })
            .await;
        }
    }

    /// Index of the leader, read off the (public) `/metrics`.
    async fn leader(&self, http: &reqwest::Client) -> usize {
        wait_async("a leader", Duration::from_secs(60), || async {
            for (i, (_, url)) in self.workers.iter().enumerate() {
                let text = http
                    .get(format!("{url}/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                if sluice_tests::cluster::leads(&text) {
                    return Some(i);
                }
            }
            None
        })
        .await
    }
}

/// A request; `auth` is a ready Authorization value. Returns status and JSON (or text) body.
async fn send(
    http: &reqwest::Client,
    method: Method,
    url: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("REST request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn datagen(topic: &str) -> Value {
    json!({"connector.class": "datagen", "tasks.max": "1", "topic": topic, "batch_size": "10", "count": "20"})
}

/// `sluice connectors ...` with extra env; returns (success, stdout + stderr).
fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(sluice_bin());
    command
        .arg("connectors")
        .args(args)
        .env_remove("SLUICE_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run sluice connectors");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_roles_rotation_basic_users_and_only_signed_forwarded_writes() {
    let mut group = Group::new();
    let tokens = group.path().join("tokens");
    std::fs::write(&tokens, format!("admin:{ADMIN}\nread:{READER}\n")).expect("tokens");
    let users = group.path().join("htpasswd");
    let hash = bcrypt::hash("alice-pw", 4).expect("bcrypt");
    let hash_admin = bcrypt::hash("bob-pw", 4).expect("bcrypt");
    std::fs::write(&users, format!("alice:{hash}\nbob:{hash_admin}:admin\n")).expect("users");
    let rest = format!(
        "  auth:\n    tokens_file: {}\n    basic_file: {}\n    worker_secret: {WORKER_SECRET}\n",
        tokens.display(),
        users.display()
    );
    group.start("http", &rest);
    group.start("http", &rest);
    let http = reqwest::Client::new();
    group.wait_healthy(&http).await;
    let leader = group.leader(&http).await;
    let follower = 1 - leader;
    let list = format!("{}/connectors", group.url(follower));

    // No or wrong credentials: 401 (with a challenge); /health stayed open above.
    let response = http.get(&list).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, _) = send(
        &http,
        Method::GET,
        &list,
        Some(&bearer("not-a-token-at-all-xx")),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        &http,
        Method::GET,
        &list,
        Some(&basic("alice", "wrong")),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Read-only credentials read, and get 403 on every write.
    let (status, body) = send(&http, Method::GET, &list, Some(&bearer(READER)), None).await;
    assert_eq!((status, body), (200, json!([])));
    let (status, _) = send(
        &http,
        Method::GET,
        &list,
        Some(&basic("alice", "alice-pw")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let topic = unique("secure-gen");
    let create = json!({"name": topic, "config": datagen(&topic)});
    for auth in [bearer(READER), basic("alice", "alice-pw")] {
        let (status, body) = send(
            &http,
            Method::POST,
            &list,
            Some(&auth),
            Some(create.clone()),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let config_url = format!("{list}/{topic}/config");
        let (status, _) = send(
            &http,
            Method::PUT,
            &config_url,
            Some(&auth),
            Some(datagen(&topic)),
        )
        .await;
        assert_eq!(status, 403);
        let (status, _) = send(
            &http,
            Method::DELETE,
            &format!("{list}/{topic}"),
            Some(&auth),
            None,
        )
        .await;
        assert_eq!(status, 403);
    }

    // An admin write sent to the follower is forwarded, signed, and applied by the leader.
    let (status, body) = send(
        &http,
        Method::POST,
        &list,
        Some(&bearer(ADMIN)),
        Some(create),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let leader_list = format!("{}/connectors", group.url(leader));
    let (status, body) = send(
        &http,
        Method::GET,
        &leader_list,
        Some(&basic("bob", "bob-pw")),
        None,
    )
    .await;
    assert_eq!((status, body), (200, json!([topic.clone()])));

    // Forged forwarded writes: admin credentials without, or with a made-up, worker signature.
    let forged = unique("forged");
    let forged_body = json!({"name": forged, "config": datagen(&forged)});
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{leader_list}?forward=false"),
        Some(&bearer(ADMIN)),
        Some(forged_body.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("worker signature"),
        "{body}"
    );
    let response = http
        .post(&leader_list)
        .header("authorization", bearer(ADMIN))
        .header("x-sluice-worker-timestamp", "1")
        .header("x-sluice-worker-signature", "AAAA")
        .json(&forged_body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    let (_, body) = send(&http, Method::GET, &leader_list, Some(&bearer(ADMIN)), None).await;
    assert_eq!(body, json!([topic.clone()]), "a forged write was applied");

    // Input limits: an oversized body gets 413, malformed JSON a 400 naming line and column.
    let huge = json!({"name": "huge", "config": {"connector.class": "datagen", "pad": "x".repeat(3 << 20)}});
    // (Its own client: the server answers before reading the body and closes the connection.)
    let once = reqwest::Client::new();
    let (status, _) = send(
        &once,
        Method::POST,
        &leader_list,
        Some(&bearer(ADMIN)),
        Some(huge),
    )
    .await;
    assert_eq!(status, 413);
    let response = http
        .post(&leader_list)
        .header("authorization", bearer(ADMIN))
        .header("content-type", "application/json")
        .body("{\"name\": \"x\",\n \"config\": {oops}}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("JSON error body");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("line 2 column"), "{body}");
    let (status, body) = send(
        &http,
        Method::POST,
        &leader_list,
        Some(&bearer(ADMIN)),
        Some(json!({"name": "bad/name", "config": datagen("t")})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // The CLI: refused without a token, works with SLUICE_TOKEN, a read token cannot delete.
    let url = group.url(follower).to_owned();
    let (ok, text) = cli(&["--url", &url, "list"], &[]);
    assert!(!ok && text.contains("HTTP 401"), "{text}");
    let (ok, text) = cli(&["--url", &url, "list"], &[("SLUICE_TOKEN", ADMIN)]);
    assert!(ok && text.contains(&topic), "{text}");
    let (ok, text) = cli(&["--url", &url, "--token", READER, "delete", &topic], &[]);
    assert!(!ok && text.contains("HTTP 403"), "{text}");

    // Rotation: the file is rewritten; the old admin token stops working, the new one works.
    let rotated = "admin-rotated-token-fedcba9876543210";
    std::fs::write(&tokens, format!("read:{READER}\nadmin:{rotated}\n")).expect("rotate");
    let (status, _) = send(&http, Method::GET, &list, Some(&bearer(ADMIN)), None).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        &http,
        Method::DELETE,
        &format!("{list}/{topic}"),
        Some(&bearer(rotated)),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, body) = send(
        &http,
        Method::GET,
        &leader_list,
        Some(&bearer(rotated)),
        None,
    )
    .await;
    assert_eq!(body, json!([]));

    let logs = group.logs();
    for secret in [ADMIN, READER, rotated, WORKER_SECRET, "alice-pw", "bob-pw"] {
        assert!(!logs.contains(secret), "a credential appears in the logs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_never_appears_in_rest_output_logs_or_internal_topics() {
    let mut group = Group::new();
    group.start("http", "");
    let http = reqwest::Client::new();
    group.wait_healthy(&http).await;
    let base = group.url(0).to_owned();

    // One password given as a file reference (resolved only when the task starts), one
    // literally: neither may show in answers or logs; the config topic holds the reference.
    let referenced = "Ref3renced-Passw0rd-a81f";
    let literal = "L1teral-T0ken-5c2d";
    let secrets = group.path().join("secrets.properties");
    std::fs::write(&secrets, format!("http.password={referenced}\n")).expect("secrets");
    let topic = unique("secret-in");
    kafka::create_topic(&topic, 1).await;
    let a = unique("sink-ref");
    let b = unique("sink-literal");
    let configs = [
        (
            a.clone(),
            json!({"connector.class": "http-sink", "topics": topic, "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false", "url": "http://127.0.0.1:9/ingest",
                   "retry_backoff": "20", "retry_max_backoff": "100", "auth_type": "basic", "auth_username": "svc",
                   "auth_password": format!("${{file:{}:http.password}}", secrets.display())}),
        ),
        (
            b.clone(),
            json!({"connector.class": "http-sink", "topics": topic, "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false", "url": "http://127.0.0.1:9/ingest",
                   "retry_backoff": "20", "retry_max_backoff": "100", "auth_type": "bearer", "auth_token": literal}),
        ),
    ];
    let mut answers = String::new();
    for (name, config) in &configs {
        let (status, body) = send(
            &http,
            Method::POST,
            &format!("{base}/connectors"),
            None,
            Some(json!({"name": name, "config": config})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        answers.push_str(&body.to_string());
        let (status, body) = send(
            &http,
            Method::PUT,
            &format!("{base}/connector-plugins/http-sink/config/validate"),
            None,
            Some(config.clone()),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        answers.push_str(&body.to_string());
    }
    for name in [&a, &b] {
        wait_async("the sink to run", Duration::from_secs(60), || async {
            let (_, status) = send(
                &http,
                Method::GET,
                &format!("{base}/connectors/{name}/status"),
                None,
                None,
            )
            .await;
            (status["tasks"][0]["state"] == "RUNNING").then_some(())
        })
        .await;
        for path in ["", "/config", "/status", "/tasks", "/offsets"] {
            let (_, body) = send(
                &http,
                Method::GET,
                &format!("{base}/connectors/{name}{path}"),
                None,
                None,
            )
            .await;
            answers.push_str(&body.to_string());
        }
    }
    let (_, body) = send(
        &http,
        Method::GET,
        &format!("{base}/connectors?expand=info&expand=status"),
        None,
        None,
    )
    .await;
    answers.push_str(&body.to_string());
    // What was shown is the mask: the answers are about these connectors.
    assert!(
        answers.contains("[hidden]") && answers.contains(&a),
        "{answers}"
    );
    // A record makes the tasks use their credentials (the endpoint refuses the connection).
    kafka::produce(
        &kafka::producer(),
        &topic,
        [("k".to_owned(), "{\"v\":1}".to_owned())],
    )
    .await;
    // Each sink then fails to send it and, after a few quiet retries, says so in the log.
    // (Their retry lines carry no connector name; one line per task at attempt 4.)
    let tried = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("request failed; retrying") && l.contains("attempt=4 "))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while tried(&group.logs()) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sinks did not try the endpoint: {}",
            group.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let group_name = group.group.clone();
    let (configs_raw, status_raw) = tokio::task::spawn_blocking(move || {
        let raw = |topic: &str| -> Vec<u8> {
            kafka::read_all(topic)
                .into_iter()
                .flat_map(|r| [r.key.unwrap_or_default(), r.value.unwrap_or_default()].concat())
                .collect()
        };
        (
            raw(&format!("{group_name}-configs")),
            raw(&format!("{group_name}-status")),
        )
    })
    .await
    .expect("read topics");
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(&configs_raw, "http.password}"),
        "the config topic should hold the reference"
    );
    assert!(
        !contains(&configs_raw, referenced),
        "the resolved password is in the config topic"
    );
    assert!(!contains(&status_raw, referenced) && !contains(&status_raw, literal));
    for secret in [referenced, literal] {
        assert!(
            !answers.contains(secret),
            "{secret} in a REST answer: {answers}"
        );
    }
    let logs = group.logs();
    assert!(logs.contains(&a), "the log is about these connectors");
    for secret in [referenced, literal] {
        assert!(!logs.contains(secret), "{secret} in the log");
    }
}

/// Planted secrets: an environment variable of the worker and a line of a file it may read.
const ENV_SECRET: &str = "planted-env-secret-9f3a0c";
const FILE_SECRET: &str = "planted-file-secret-77c1e4";
const OTHER_ENV_SECRET: &str = "planted-unlisted-secret-5b2d";

#[tokio::test(flavor = "multi_thread")]
async fn provider_references_resolve_under_the_policy_and_never_echo_a_resolved_value() {
    let mut group = Group::new();
    let secrets = group.path().join("secrets");
    std::fs::create_dir(&secrets).expect("secrets dir");
    let app = secrets.join("app.properties");
    std::fs::write(&app, format!("count={FILE_SECRET}\nsmall=5\n")).expect("secrets file");
    let fifo = secrets.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let outside = group.path().join("outside.properties");
    std::fs::write(&outside, format!("count={FILE_SECRET}\n")).expect("outside file");
    // /dev/zero is listed so that the regular-file check, not the path list, must refuse it.
    let policy = format!(
        "config_providers:\n  env:\n    allowed_names: [SLUICE_PLANTED_*]\n  file:\n    allowed_paths: [{}, /dev/zero]\n",
        secrets.display()
    );
    group.start_with_env(
        "http",
        &policy,
        &[
            ("SLUICE_PLANTED_SECRET", ENV_SECRET),
            ("UNLISTED_PLANTED_SECRET", OTHER_ENV_SECRET),
        ],
    );
    // Generous: a read that blocked would hang the request far longer.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    group.wait_healthy(&http).await;
    let base = group.url(0).to_owned();
    let validate = format!("{base}/connector-plugins/datagen/config/validate");
    let mut answers = String::new();
    let config =
        |count: String| json!({"connector.class": "datagen", "topic": "t", "count": count});
    let env_ref = "${env:SLUICE_PLANTED_SECRET}".to_owned();
    let file_ref = format!("${{file:{}:count}}", app.display());

    // A type error shows the reference as written, never what it resolved to.
    for reference in [&env_ref, &file_ref] {
        let (status, body) = send(
            &http,
            Method::PUT,
            &validate,
            None,
            Some(config(reference.clone())),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["error_count"], 1, "{body}");
        let text = body.to_string();
        assert!(
            text.contains("expected an integer") && text.contains(reference.as_str()),
            "{text}"
        );
        answers.push_str(&text);
        let name = unique("planted");
        let (status, body) = send(
            &http,
            Method::POST,
            &format!("{base}/connectors"),
            None,
            Some(json!({"name": name, "config": config(reference.clone())})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        answers.push_str(&body.to_string());
        let (status, body) = send(
            &http,
            Method::PUT,
            &format!("{base}/connectors/{name}/config"),
            None,
            Some(config(reference.clone())),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        answers.push_str(&body.to_string());
    }

    // Outside the policy: refused with a reason that names the rule, not the content.
    let refusals = [
        ("${env:UNLISTED_PLANTED_SECRET}".to_owned(), "allowed_names"),
        (
            format!("${{file:{}:count}}", outside.display()),
            "outside config_providers.file.allowed_paths",
        ),
        (
            format!(
                "${{file:{}/../outside.properties:count}}",
                secrets.display()
            ),
            "outside config_providers.file.allowed_paths",
        ),
        ("${file:/dev/zero:x}".to_owned(), "not a regular file"),
        (
            format!("${{file:{}:x}}", fifo.display()),
            "not a regular file",
        ),
    ];
    for (reference, reason) in &refusals {
        let (status, body) = send(
            &http,
            Method::PUT,
            &validate,
            None,
            Some(config(reference.clone())),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let text = body.to_string();
        assert!(text.contains(reason), "{reference}: {text}");
        answers.push_str(&text);
        let (status, body) = send(
            &http,
            Method::POST,
            &format!("{base}/connectors"),
            None,
            Some(json!({"name": unique("refused"), "config": config(reference.clone())})),
        )
        .await;
        assert_eq!(status, 400, "{reference}: {body}");
        assert!(body.to_string().contains(reason), "{reference}: {body}");
        answers.push_str(&body.to_string());
    }
    // The worker kept serving.
    let (status, _) = send(
        &http,
        Method::GET,
        &format!("{base}/connectors"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Valid when created; the file then changes under the connector, which fails on restart:
    // its status says why with the reference, not the value.
    let name = unique("changed");
    let small = format!("${{file:{}:small}}", app.display());
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{base}/connectors"),
        None,
        Some(json!({"name": name, "config": config(small.clone())})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    answers.push_str(&body.to_string());
    let status_url = format!("{base}/connectors/{name}/status");
    wait_async("the connector to run", Duration::from_secs(60), || async {
        let (_, status) = send(&http, Method::GET, &status_url, None, None).await;
        (status["connector"]["state"] == "RUNNING").then_some(())
    })
    .await;
    std::fs::write(&app, format!("count={FILE_SECRET}\nsmall={FILE_SECRET}\n")).expect("rewrite");
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{base}/connectors/{name}/restart"),
        None,
        None,
    )
    .await;
    assert!(status < 300, "{body}");
    let failed = wait_async("the connector to fail", Duration::from_secs(60), || async {
        let (_, status) = send(&http, Method::GET, &status_url, None, None).await;
        (status["connector"]["state"] == "FAILED").then_some(status)
    })
    .await;
    let trace = failed["connector"]["trace"].as_str().unwrap_or_default();
    assert!(trace.contains("small}"), "{failed}");
    for path in ["", "/config", "/status", "/tasks"] {
        let (_, body) = send(
            &http,
            Method::GET,
            &format!("{base}/connectors/{name}{path}"),
            None,
            None,
        )
        .await;
        answers.push_str(&body.to_string());
    }
    for secret in [ENV_SECRET, FILE_SECRET, OTHER_ENV_SECRET] {
        assert!(
            !answers.contains(secret),
            "{secret} in a REST answer: {answers}"
        );
    }
    let logs = group.logs();
    for secret in [ENV_SECRET, FILE_SECRET, OTHER_ENV_SECRET] {
        assert!(!logs.contains(secret), "{secret} in the log: {logs}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_secret_reaches_the_task_resolved_but_never_the_config_topic_or_rest() {
    let planted = "planted-header-key-3e91d7";
    let literal = "literal-header-token-c04b";
    let mut group = Group::new();
    group.start_with_env("http", "", &[("SLUICE_PLANTED_KEY", planted)]);
    // The endpoint records the headers the sink sends.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let app = {
        let seen = seen.clone();
        axum::Router::new().route(
            "/ingest",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let seen = seen.clone();
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    seen.lock()
                        .expect("lock")
                        .push((header("x-api-key"), header("x-literal-token")));
                    "ok"
                }
            }),
        )
    };
    let endpoint = sluice_tests::serve(app);
    let http = reqwest::Client::new();
    group.wait_healthy(&http).await;
    let base = group.url(0).to_owned();
    let topic = unique("nested-in");
    kafka::create_topic(&topic, 2).await;
    let name = unique("nested-sink");
    let config = json!({"connector.class": "http-sink", "tasks.max": "2", "topics": topic,
        "value.converter": "org.apache.kafka.connect.json.JsonConverter", "value.converter.schemas.enable": "false",
        "url": format!("http://{endpoint}/ingest"), "batch_format": "single",
        "headers": {"X-Api-Key": "${env:SLUICE_PLANTED_KEY}", "X-Literal-Token": literal, "X-Source": "sluice"}});
    let mut answers = String::new();
    let (status, body) = send(
        &http,
        Method::POST,
        &format!("{base}/connectors"),
        None,
        Some(json!({"name": name, "config": config})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    answers.push_str(&body.to_string());
    let status_url = format!("{base}/connectors/{name}/status");
    wait_async("2 RUNNING tasks", Duration::from_secs(90), || async {
        let (_, status) = send(&http, Method::GET, &status_url, None, None).await;
        let tasks = status["tasks"].as_array()?;
        (tasks.len() == 2 && tasks.iter().all(|t| t["state"] == "RUNNING")).then_some(())
    })
    .await;

    // The task resolved the reference when it started: the endpoint gets the real value.
    kafka::produce(
        &kafka::producer(),
        &topic,
        [("k".to_owned(), "{\"v\":1}".to_owned())],
    )
    .await;
    wait_async(
        "a request with the headers",
        Duration::from_secs(60),
        || async {
            let seen = seen.lock().expect("lock");
            seen.iter()
                .any(|(key, token)| key == planted && token == literal)
                .then_some(())
        },
    )
    .await;

    // REST hides both credentials of the map (by their names) and never shows the value.
    for path in ["", "/config", "/status", "/tasks"] {
        let (_, body) = send(
            &http,
            Method::GET,
            &format!("{base}/connectors/{name}{path}"),
            None,
            None,
        )
        .await;
        answers.push_str(&body.to_string());
    }
    let (_, tasks) = send(
        &http,
        Method::GET,
        &format!("{base}/connectors/{name}/tasks"),
        None,
        None,
    )
    .await;
    for task in tasks.as_array().expect("tasks") {
        let headers = &task["config"]["headers"];
        assert_eq!(headers["X-Api-Key"], "[hidden]", "{tasks}");
        assert_eq!(headers["X-Literal-Token"], "[hidden]", "{tasks}");
        assert_eq!(headers["X-Source"], "sluice", "{tasks}");
    }
    let (_, shown) = send(
        &http,
        Method::GET,
        &format!("{base}/connectors/{name}/config"),
        None,
        None,
    )
    .await;
    assert_eq!(shown["headers"]["X-Literal-Token"], "[hidden]", "{shown}");
    let (_, body) = send(
        &http,
        Method::GET,
        &format!("{base}/connectors?expand=info&expand=status"),
        None,
        None,
    )
    .await;
    answers.push_str(&body.to_string());
    let (_, body) = send(
        &http,
        Method::PUT,
        &format!("{base}/connector-plugins/http-sink/config/validate"),
        None,
        Some(config.clone()),
    )
    .await;
    answers.push_str(&body.to_string());
    // What a client read back and sends again keeps the hidden value (it is not "[hidden]").
    let (status, body) = send(
        &http,
        Method::PUT,
        &format!("{base}/connectors/{name}/config"),
        None,
        Some(shown),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    answers.push_str(&body.to_string());

    let configs_topic = format!("{}-configs", group.group);
    let stored = tokio::task::spawn_blocking(move || {
        kafka::read_all(&configs_topic)
            .into_iter()
            .flat_map(|r| [r.key.unwrap_or_default(), r.value.unwrap_or_default()].concat())
            .collect::<Vec<u8>>()
    })
    .await
    .expect("read the config topic");
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("${env:SLUICE_PLANTED_KEY}"), "{stored}");
    assert!(
        !stored.contains(planted),
        "a resolved value in the config topic: {stored}"
    );
    assert!(!stored.contains("[hidden]"), "a mask was stored: {stored}");
    for secret in [planted, literal] {
        assert!(
            !answers.contains(secret),
            "{secret} in a REST answer: {answers}"
        );
        assert!(!group.logs().contains(secret), "{secret} in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_loopback_api_refuses_requests_naming_a_foreign_host() {
    let mut group = Group::new();
    group.start("http", "  allowed_hosts: [sluice.internal]\n");
    let http = reqwest::Client::new();
    group.wait_healthy(&http).await;
    let url = format!("{}/connectors", group.url(0));
    let port = url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
        .to_owned();
    for (host, expected) in [
        ("evil.example".to_owned(), 403),
        (format!("evil.example:{port}"), 403),
        (format!("127.0.0.1.nip.io:{port}"), 403),
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        ("sluice.internal".to_owned(), 200),
    ] {
        let response = http
            .get(&url)
            .header("host", &host)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), expected, "Host: {host}");
        if expected == 403 {
            let body = response.text().await.unwrap_or_default();
            assert!(body.contains("allowed_hosts"), "{body}");
        }
    }
    // A write through a rebinding name is refused too, and nothing was created.
    let response = http
        .post(&url)
        .header("host", "evil.example")
        .json(&json!({"name": "rebound", "config": datagen("rebound")}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 403);
    let (_, body) = send(&http, Method::GET, &url, None, None).await;
    assert_eq!(body, json!([]));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with `openssl`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=sluice-test-ca",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            ext,
        ]);
    }
    // Workers present their server certificate as client identity too; allow both uses.
    std::fs::write(
        dir.join("worker.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "worker.ext",
    ]);
    let bundle = [
        std::fs::read(dir.join("client.pem")).expect("pem"),
        std::fs::read(dir.join("client.key")).expect("key"),
    ]
    .concat();
    std::fs::write(dir.join("client-bundle.pem"), bundle).expect("bundle");
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_refuses_clients_without_a_certificate_and_workers_forward_with_theirs() {
    let mut group = Group::new();
    let certs = group.path().join("certs");
    std::fs::create_dir(&certs).expect("certs dir");
    certificates(&certs);
    let c = |f: &str| certs.join(f).display().to_string();
    let rest = format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    ca_file: {}\n",
        c("server.pem"),
        c("server.key"),
        c("ca.pem"),
        c("ca.pem")
    );
    group.start("https", &rest);
    group.start("https", &rest);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).expect("ca"))
        .expect("ca pem");
    let identity = reqwest::Identity::from_pem(
        &std::fs::read(certs.join("client-bundle.pem")).expect("bundle"),
    )
    .expect("identity");
    let with_cert = reqwest::Client::builder()
        .tls_certs_merge([ca.clone()])
        .identity(identity)
        .build()
        .expect("client");
    let without_cert = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .build()
        .expect("client");
    group.wait_healthy(&with_cert).await;
    let leader = group.leader(&with_cert).await;
    let follower = 1 - leader;

    let health = format!("{}/connectors", group.url(follower));
    assert!(
        without_cert.get(&health).send().await.is_err(),
        "a client without a certificate was served"
    );
    let plain = health.replace("https://", "http://");
    assert!(reqwest::get(&plain).await.is_err(), "plain HTTP was served");
    let (status, _) = send(&with_cert, Method::GET, &health, None, None).await;
    assert_eq!(status, 200);

    // A write to the follower reaches the leader over mTLS with the follower's certificate.
    let topic = unique("tls-gen");
    let (status, body) = send(
        &with_cert,
        Method::POST,
        &health,
        None,
        Some(json!({"name": topic, "config": datagen(&topic)})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, body) = send(
        &with_cert,
        Method::GET,
        &format!("{}/connectors", group.url(leader)),
        None,
        None,
    )
    .await;
    assert_eq!(body, json!([topic.clone()]));

    let url = group.url(follower).to_owned();
    let (ok, text) = cli(
        &[
            "--url",
            &url,
            "--ca-file",
            &c("ca.pem"),
            "--client-cert",
            &c("client-bundle.pem"),
            "list",
        ],
        &[],
    );
    assert!(ok && text.contains(&topic), "{text}");
    let (ok, _) = cli(&["--url", &url, "--ca-file", &c("ca.pem"), "list"], &[]);
    assert!(!ok, "the CLI without a client certificate was served");
}

/// Three workers with REST tokens and a worker secret (`tls`: also HTTPS with client certificates
/// from a private CA): connectors created through a follower get all their tasks, which needs
/// every worker-to-worker call (task configs handed to the leader included) to be signed and to
/// trust and present certificates as configured; a forged `forward=false` write stays refused.
async fn a_secured_cluster_runs_the_tasks_of_connectors_created_through_a_follower(tls: bool) {
    let mut group = Group::new();
    let tokens = group.path().join("tokens");
    std::fs::write(&tokens, format!("admin:{ADMIN}\n")).expect("tokens");
    let mut rest = format!(
        "  auth:\n    tokens_file: {}\n    worker_secret: {WORKER_SECRET}\n",
        tokens.display()
    );
    let mut http = reqwest::Client::builder();
    let scheme = if tls {
        let certs = group.path().join("certs");
        std::fs::create_dir(&certs).expect("certs dir");
        certificates(&certs);
        let c = |f: &str| certs.join(f).display().to_string();
        rest.push_str(&format!(
            "  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n    ca_file: {}\n",
            c("server.pem"),
            c("server.key"),
            c("ca.pem"),
            c("ca.pem")
        ));
        let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).expect("ca"))
            .expect("ca pem");
        let identity = reqwest::Identity::from_pem(
            &std::fs::read(certs.join("client-bundle.pem")).expect("bundle"),
        )
        .expect("identity");
        http = http.tls_certs_merge([ca]).identity(identity);
        "https"
    } else {
        "http"
    };
    for _ in 0..3 {
        group.start(scheme, &rest);
    }
    let http = http.build().expect("client");
    group.wait_healthy(&http).await;
    let leader = group.leader(&http).await;
    let follower = (leader + 1) % 3;
    let admin = bearer(ADMIN);
    let base = group.url(follower).to_owned();

    let names = [unique("secured-a"), unique("secured-b")];
    for name in &names {
        let config = json!({"connector.class": "datagen", "tasks.max": "2", "topic": name,
                            "batch_size": "10", "rate": "20"});
        let (status, body) = send(
            &http,
            Method::POST,
            &format!("{base}/connectors"),
            Some(&admin),
            Some(json!({"name": name, "config": config})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // Each connector's instance hands its task configs to the leader, from wherever it runs.
    let mut workers = std::collections::BTreeSet::new();
    for name in &names {
        let url = format!("{base}/connectors/{name}/status");
        let status = wait_async(
            &format!("{name} RUNNING with 2 RUNNING tasks"),
            Duration::from_secs(120),
            || async {
                let (_, status) = send(&http, Method::GET, &url, Some(&admin), None).await;
                let tasks = status["tasks"].as_array()?;
                let ok = status["connector"]["state"] == "RUNNING"
                    && tasks.len() == 2
                    && tasks.iter().all(|t| t["state"] == "RUNNING");
                ok.then_some(status)
            },
        )
        .await;
        for task in status["tasks"].as_array().into_iter().flatten() {
            workers.insert(task["worker_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert!(
        workers.len() >= 2,
        "the 4 tasks all run on one worker: {workers:?}"
    );
    let logs = group.logs();
    assert!(
        !logs.contains("cannot hand task configs to the leader"),
        "a follower's task configs were refused: {logs}"
    );

    // Admin credentials without a worker signature cannot pose as a worker.
    let forged = format!(
        "{}/connectors/{}/tasks?forward=false",
        group.url(leader),
        names[0]
    );
    let (status, body) = send(
        &http,
        Method::POST,
        &forged,
        Some(&admin),
        Some(json!([{"task.class": "forged"}])),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (_, tasks) = send(
        &http,
        Method::GET,
        &format!("{base}/connectors/{}/tasks", names[0]),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        tasks.as_array().map(Vec::len),
        Some(2),
        "a forged write changed the tasks: {tasks}"
    );
}

/// A request signed by the workers' own client (`sluice::rest::Peers`), captured before it is
/// sent: it passes once at the worker it was signed for, and nowhere else, ever again.
#[tokio::test(flavor = "multi_thread")]
async fn a_forwarded_signature_is_bound_to_its_target_worker_and_usable_once() {
    let mut group = Group::new();
    let tokens = group.path().join("tokens");
    std::fs::write(&tokens, format!("admin:{ADMIN}\n")).expect("tokens");
    let rest = format!(
        "  auth:\n    tokens_file: {}\n    worker_secret: {WORKER_SECRET}\n",
        tokens.display()
    );
    group.start("http", &rest);
    group.start("http", &rest);
    let http = reqwest::Client::new();
    group.wait_healthy(&http).await;
    let leader = group.leader(&http).await;
    let (leader_url, follower_url) = (group.url(leader), group.url(1 - leader));
    let settings =
        sluice::config::load_worker(&group.path().join("worker-0.yaml")).expect("worker file");
    let peers = sluice::rest::Peers::new(&settings.rest).expect("peers");
    let create = |name: &str| {
        serde_json::to_vec(&json!({"name": name, "config": datagen(name)})).expect("json")
    };
    let message = |body: &Value| body["message"].as_str().unwrap_or_default().to_owned();
    let execute = |request: reqwest::Request| {
        let http = http.clone();
        async move {
            let response = http.execute(request).await.expect("request");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
    };

    // Signed for the leader: accepted once; the same request again is a replay.
    let name = unique("signed-once");
    let captured = peers
        .request(
            Method::POST,
            leader_url,
            "/connectors?forward=false",
            create(&name),
        )
        .build()
        .expect("request");
    let replay = captured.try_clone().expect("a clonable request");
    let (status, body) = execute(captured).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = execute(replay).await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("used before"), "{body}");

    // Signed for the leader, sent to the follower: refused there.
    let misdirected_name = unique("signed-misdirected");
    let mut misdirected = peers
        .request(
            Method::POST,
            leader_url,
            "/connectors?forward=false",
            create(&misdirected_name),
        )
        .build()
        .expect("request");
    *misdirected.url_mut() = format!("{follower_url}/connectors?forward=false")
        .parse()
        .expect("url");
    let (status, body) = execute(misdirected).await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("made for another worker"), "{body}");

    // Only the one accepted request made a connector.
    let (status, list) = send(
        &http,
        Method::GET,
        &format!("{leader_url}/connectors"),
        Some(&bearer(ADMIN)),
        None,
    )
    .await;
    assert_eq!((status, list), (200, json!([name])));
    assert!(
        group
            .logs()
            .contains("the worker signature was used before (a replayed request)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_tokens_and_a_worker_secret_runs_follower_connectors_tasks() {
    a_secured_cluster_runs_the_tasks_of_connectors_created_through_a_follower(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_tokens_a_worker_secret_and_mtls_runs_follower_connectors_tasks() {
    a_secured_cluster_runs_the_tasks_of_connectors_created_through_a_follower(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_non_loopback_listener_is_refused_unless_allowed() {
    let group = Group::new();
    let port = free_port();
    let file = group.worker_file("open", &format!("0.0.0.0:{port}"), "");
    let mut refused = Sluice::worker(group.path(), "open", &file);
    assert!(!refused.wait_exit(Duration::from_secs(60)));
    let log = refused.log_text();
    assert!(
        log.contains("is not a loopback address") && log.contains("allow_unauthenticated"),
        "{log}"
    );

    let file = group.worker_file(
        "allowed",
        &format!("0.0.0.0:{port}"),
        "  allow_unauthenticated: true\n",
    );
    let mut allowed = Sluice::worker(group.path(), "allowed", &file);
    let url = format!("http://127.0.0.1:{port}/health");
    wait_async("the allowed worker", Duration::from_secs(90), || async {
        reqwest::get(&url)
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    assert!(allowed.is_running());
    assert!(
        allowed
            .log_text()
            .contains("without authentication on a non-loopback address")
    );
}

/// A nisshi broker that requires SASL/SCRAM, with user `sluice`. nisshi implements
/// SCRAM-SHA-256/512 only (no SASL/PLAIN), so SCRAM is what is tested against a broker.
struct ScramBroker {
    _dir: tempfile::TempDir,
    child: std::process::Child,
    address: String,
}

impl Drop for ScramBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nisshi() -> PathBuf {
    let out = Command::new("bash")
        .arg(sluice_tests::repo_root().join("scripts/install-broker.sh"))
        .output()
        .expect("install-broker.sh");
    PathBuf::from(String::from_utf8(out.stdout).expect("path").trim())
}

fn scram_broker(password: &str) -> ScramBroker {
    scram_broker_with(password, None)
}

/// A SCRAM broker; with `tls`, a directory holding `server.pem` and `server.key` (from
/// [`certificates`]), it accepts only TLS connections.
fn scram_broker_with(password: &str, tls: Option<&Path>) -> ScramBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let address = format!("127.0.0.1:{}", free_port());
    let url = format!("tcp://{address}");
    let spawn = |auth: bool| {
        let mut command = Command::new(nisshi());
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://nisshi.db", "--silent"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if auth {
            command.arg("--authentication");
            if let Some(tls) = tls {
                command
                    .arg("--cert")
                    .arg(tls.join("server.pem"))
                    .arg("--key")
                    .arg(tls.join("server.key"));
            }
        }
        command.spawn().expect("start nisshi")
    };
    // The user is created while the broker is still open, then it restarts requiring SASL.
    let mut open = spawn(false);
    wait_for("the user to be created", Duration::from_secs(60), || {
        let out = Command::new(nisshi())
            .args(["user", "create", "--broker", &url, "sluice", password])
            .output()
            .ok()?;
        out.status.success().then_some(())
    });
    let _ = open.kill();
    let _ = open.wait();
    let child = spawn(true);
    ScramBroker {
        _dir: dir,
        child,
        address,
    }
}

/// Waits for a distributed worker at `url` to join its group, then creates a datagen connector
/// writing `count` records to `topic`.
async fn distributed_datagen(url: &str, topic: &str, count: u64, worker: &Sluice) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let healthy = match reqwest::get(format!("{url}/health")).await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if healthy {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not join its group: {}",
            worker.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = reqwest::Client::new()
        .put(format!("{url}/connectors/{topic}-more/config"))
        .json(&serde_json::json!({"connector.class": "datagen", "topic": topic, "count": count}))
        .send()
        .await
        .expect("create the connector");
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_distributed_worker_joins_over_sasl_ssl() {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let tls = tempfile::tempdir().expect("temp dir");
    certificates(tls.path());
    // `nisshi user create` makes SCRAM-SHA-512 credentials (SHA-256 is unit-tested).
    let password = "scram-ssl-Passw0rd";
    let broker = scram_broker_with(password, Some(tls.path()));
    let ca = tls.path().join("ca.pem");
    let mut client = sasl_client(&broker.address, password);
    client
        .set("security.protocol", "SASL_SSL")
        .set("ssl.ca.location", ca.display().to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let topic = unique("sasl-ssl");
    let group = unique("sasl-ssl-group");
    let port = free_port();
    let worker = dir.path().join("worker.yaml");
    std::fs::write(
        &worker,
        format!(
            "bootstrap_servers: {}\noffset_flush_interval: 100ms\nrest:\n  listen: 127.0.0.1:{port}\n\
             cluster:\n  group_id: {group}\n  config_topic: {group}-configs\n  offsets_topic: {group}-offsets\n  \
             status_topic: {group}-status\n  offsets_partitions: 2\n\
             kafka:\n  security.protocol: SASL_SSL\n  sasl.mechanism: SCRAM-SHA-512\n  sasl.username: sluice\n  \
             sasl.password: {password}\n  ssl.ca.location: {}\n",
            broker.address,
            ca.display()
        ),
    )
    .expect("worker file");
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        client.create().expect("admin");
    wait_async(
        "the topic over SASL_SSL",
        Duration::from_secs(60),
        || async {
            let r = admin
                .create_topics(
                    [&rdkafka::admin::NewTopic::new(
                        &topic,
                        1,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    )],
                    &rdkafka::admin::AdminOptions::new(),
                )
                .await
                .ok()?;
            r.into_iter().all(|r| r.is_ok()).then_some(())
        },
    )
    .await;
    let sluice = Sluice::worker(dir.path(), "sasl-ssl-worker", &worker);
    distributed_datagen(&format!("http://127.0.0.1:{port}"), &topic, 80, &sluice).await;
    let consumer: BaseConsumer = client.create().expect("consumer");
    let end = wait_for("80 records over SASL_SSL", Duration::from_secs(90), || {
        let (_, high) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(5))
            .ok()?;
        (high >= 80).then_some(high)
    });
    let status = reqwest::get(format!(
        "http://127.0.0.1:{port}/connectors/{topic}-more/status"
    ))
    .await
    .expect("status")
    .text()
    .await
    .expect("status text");
    assert!(status.contains("RUNNING"), "{status}");
    assert_eq!(end, 80, "{}", sluice.log_text());

    // Without the CA the broker's certificate is not trusted: the worker says so and stops.
    let untrusting = dir.path().join("untrusting.yaml");
    let text = std::fs::read_to_string(&worker).expect("worker file");
    std::fs::write(
        &untrusting,
        text.replace(&format!("  ssl.ca.location: {}\n", ca.display()), "")
            .replace(&format!("listen: 127.0.0.1:{port}"), "listen: 127.0.0.1:0"),
    )
    .expect("worker file");
    let mut refused = Sluice::worker(dir.path(), "untrusting-worker", &untrusting);
    assert!(!refused.wait_exit(Duration::from_secs(90)));
    let log = refused.log_text();
    assert!(log.contains("TLS") || log.contains("certificate"), "{log}");
}

fn sasl_client(address: &str, password: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", address)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "sluice")
        .set("sasl.password", password)
        .set("log_level", "0");
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_authenticates_with_sasl_scram_and_a_wrong_password_is_reported_as_such() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let password = "scram-Passw0rd-19a7";
    let broker = scram_broker(password);
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        sasl_client(&broker.address, password)
            .create()
            .expect("admin");
    let topic = unique("sasl");
    wait_async(
        "the SASL broker to create a topic",
        Duration::from_secs(60),
        || async {
            let r = admin
                .create_topics(
                    [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
                    &AdminOptions::new(),
                )
                .await
                .ok()?;
            r.into_iter().all(|r| r.is_ok()).then_some(())
        },
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let worker = |pw: &str| {
        let path = dir.path().join(format!("worker-{pw}.yaml"));
        std::fs::write(
            &path,
            format!(
                "bootstrap_servers: {}\noffsets_file: {}\noffset_flush_interval: 100ms\nrest:\n  listen: 127.0.0.1:0\n\
                 kafka:\n  security.protocol: SASL_PLAINTEXT\n  sasl.mechanism: SCRAM-SHA-512\n  sasl.username: sluice\n  sasl.password: {pw}\n",
                broker.address,
                dir.path().join("offsets.json").display()
            ),
        )
        .expect("worker file");
        path
    };
    let pipeline = dir.path().join("gen.yaml");
    std::fs::write(&pipeline, format!("name: {topic}-gen\nconnector: datagen\nconfig: {{topic: {topic}, count: 100, batch_size: 50}}\n")).expect("pipeline");

    let good = Sluice::run(dir.path(), &worker(password), &[&pipeline]);
    let consumer: BaseConsumer = sasl_client(&broker.address, password)
        .create()
        .expect("consumer");
    let end = wait_for("100 records through SASL", Duration::from_secs(90), || {
        let (_, high) = consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(5))
            .ok()?;
        (high >= 100).then_some(high)
    });
    assert_eq!(end, 100);
    drop(good);

    // Distributed mode joins its group over SASL too, and runs a connector.
    let distributed_worker = dir.path().join("distributed.yaml");
    let group = unique("sasl-group");
    let port = free_port();
    std::fs::write(
        &distributed_worker,
        format!(
            "bootstrap_servers: {}\noffset_flush_interval: 100ms\nrest:\n  listen: 127.0.0.1:{port}\n\
             cluster:\n  group_id: {group}\n  config_topic: {group}-configs\n  offsets_topic: {group}-offsets\n  \
             status_topic: {group}-status\n  offsets_partitions: 2\n\
             kafka:\n  security.protocol: SASL_PLAINTEXT\n  sasl.mechanism: SCRAM-SHA-512\n  sasl.username: sluice\n  sasl.password: {password}\n",
            broker.address
        ),
    )
    .expect("worker file");
    let distributed = Sluice::worker(dir.path(), "sasl-worker", &distributed_worker);
    let url = format!("http://127.0.0.1:{port}");
    distributed_datagen(&url, &topic, 50, &distributed).await;
    let end = wait_for(
        "50 more records from the distributed worker",
        Duration::from_secs(90),
        || {
            let (_, high) = consumer
                .fetch_watermarks(&topic, 0, Duration::from_secs(5))
                .ok()?;
            (high >= 150).then_some(high)
        },
    );
    assert_eq!(end, 150, "{}", distributed.log_text());
    drop(distributed);

    let mut bad = Sluice::run(dir.path(), &worker("wrong-password"), &[&pipeline]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while bad.is_running() {
        assert!(
            std::time::Instant::now() < deadline,
            "a worker with a wrong password kept running: {}",
            bad.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!bad.wait_exit(Duration::from_secs(1)));
    let log = bad.log_text();
    assert!(log.contains("cannot authenticate to Kafka"), "{log}");
    assert!(
        !log.contains(password) && !log.contains("wrong-password"),
        "a password is in the log"
    );
}

/// Connector configs given through the REST API may name files and plugins only under the
/// worker's `allowed_paths`, judged by where the path leads (`..`, symbolic links).
#[tokio::test(flavor = "multi_thread")]
async fn rest_connector_configs_name_paths_only_under_allowed_paths() {
    use sluice_tests::cluster::{Cluster, call};
    let mut cluster = Cluster::start(0, "");
    let allowed = cluster.path().join("files");
    let outside = cluster.path().join("elsewhere");
    std::fs::create_dir_all(allowed.join("sub")).expect("allowed dir");
    std::fs::create_dir_all(&outside).expect("outside dir");
    std::fs::write(outside.join("secret.txt"), "not for connectors\n").expect("secret");
    std::os::unix::fs::symlink(&outside, allowed.join("link")).expect("symlink");
    cluster.worker_extra = format!("allowed_paths: [{}]\n", allowed.display());
    cluster.add_worker();
    cluster.wait_healthy().await;
    let url = cluster.workers[0].url.clone();
    let at = |p: &Path| p.display().to_string();
    let topic = unique("paths");
    let file_source =
        |file: String| json!({"connector.class": "file-source", "topic": topic, "file": file});
    let file_sink =
        |file: String| json!({"connector.class": "file-sink", "topics": topic, "file": file});
    let refused = |body: &Value, field: &str| {
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains(&format!("{field}: ")) && message.contains("is outside allowed_paths"),
            "{body}"
        );
    };

    // Outside, directly, through `..`, through a symbolic link: refused, naming the field.
    let cases = [
        ("direct", file_source(at(&outside.join("secret.txt")))),
        (
            "dotdot",
            file_source(format!("{}/../elsewhere/secret.txt", at(&allowed))),
        ),
        (
            "symlink",
            file_sink(at(&allowed.join("link").join("out.jsonl"))),
        ),
        (
            "new-dotdot",
            file_sink(format!("{}/../elsewhere/new.jsonl", at(&allowed))),
        ),
    ];
    for (case, config) in cases {
        let name = unique(&format!("paths-{case}"));
        let (code, body) = call(
            Method::PUT,
            &format!("{url}/connectors/{name}/config"),
            Some(config.clone()),
        )
        .await;
        assert_eq!(code, 400, "{case}: {body}");
        refused(&body, "file");
        let (code, body) = call(
            Method::POST,
            &format!("{url}/connectors"),
            Some(json!({"name": name, "config": config})),
        )
        .await;
        assert_eq!(code, 400, "{case}: {body}");
        refused(&body, "file");
    }
    assert!(!outside.join("out.jsonl").exists() && !outside.join("new.jsonl").exists());

    // WASM: a connector's plugin and a transform's plugin outside are refused before loading.
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": unique("paths-wasm"), "config": {
            "connector.class": "wasm", "plugin": at(&sluice_tests::plugins::path("counter")), "topic": topic,
        }})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    refused(&body, "plugin");
    let (code, body) = call(
        Method::POST,
        &format!("{url}/connectors"),
        Some(json!({"name": unique("paths-transform"), "config": {
            "connector.class": "datagen", "topic": topic, "transforms": "t",
            "transforms.t.type": "wasm", "transforms.t.plugin": at(&sluice_tests::plugins::path("redact")),
        }})),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    refused(&body, "transforms.t.plugin");
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connector-plugins/file-source/config/validate"),
        Some(file_source(at(&outside.join("secret.txt")))),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let file_errors: Vec<Value> = body["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter(|c| c["value"]["name"] == "file")
        .flat_map(|c| c["value"]["errors"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        file_errors.iter().any(|e| e
            .as_str()
            .unwrap_or_default()
            .contains("is outside allowed_paths")),
        "{body}"
    );

    // Inside: accepted, and the sink writes there.
    kafka::create_topic(&topic, 1).await;
    kafka::produce(
        &kafka::producer(),
        &topic,
        [("k".to_owned(), "v".to_owned())],
    )
    .await;
    let out = allowed.join("sub").join("..").join("out.jsonl");
    let name = unique("paths-inside");
    let mut config = file_sink(at(&out));
    config["value.converter"] = json!("org.apache.kafka.connect.storage.StringConverter");
    let (code, body) = call(
        Method::PUT,
        &format!("{url}/connectors/{name}/config"),
        Some(config),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    wait_for("the sink's file", Duration::from_secs(60), || {
        std::fs::read_to_string(allowed.join("out.jsonl"))
            .ok()
            .filter(|t| t.contains('v'))
    });
    let (_, list) = call(Method::GET, &format!("{url}/connectors"), None).await;
    assert_eq!(list, json!([name]));
}
