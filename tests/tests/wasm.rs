//! WebAssembly plugins in real pipelines against the broker: the example source, sink and
//! transform move and reshape data; misbehaving plugins fail only their own task, with the reason
//! in its REST status; a WASM transform and the equivalent built-in one give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use sluice_tests::cluster::{call, wait_async};
use sluice_tests::{Sluice, free_port, kafka, plugins, unique, wait_for, write_worker};

/// The JSON documents the log-sink plugin wrote to the worker's log after `prefix`.
fn logged(log: &str, prefix: &str) -> Vec<Value> {
    let marker = format!("{prefix} {{");
    log.lines()
        .filter_map(|line| {
            let at = line.find(&marker)? + prefix.len() + 1;
            serde_json::Deserializer::from_str(&line[at..])
                .into_iter::<Value>()
                .next()?
                .ok()
        })
        .collect()
}

fn json_values(topic: &str) -> Vec<(String, Value)> {
    kafka::read_all(topic)
        .iter()
        .map(|r| {
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            (
                key,
                serde_json::from_str(&r.value_text()).expect("JSON value"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn example_plugins_run_as_source_sink_and_transform_in_real_pipelines() {
    const COUNT: u64 = 300;
    let dir = tempfile::tempdir().expect("temp dir");
    let counted = unique("wasm-counter");
    let redacted = unique("wasm-redacted");
    kafka::create_topic(&counted, 2).await;
    let prefix = unique("logged");
    // Plugins by name from the worker's plugins_dir (counter, redact) and by path (log-sink).
    let worker = write_worker(
        dir.path(),
        &format!("plugins_dir: {}\n", plugins::dir().display()),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name: {counted}-source
connector: counter
tasks: 2
config: {{topic: {counted}, count: {COUNT}, batch_size: 40}}
value_converter: {{type: json, schemas: false}}
---
name: {counted}-sink
connector: wasm
config: {{plugin: {sink}, topics: [{counted}], prefix: {prefix}}}
value_converter: {{type: json, schemas: false}}
---
name: {redacted}-gen
connector: datagen
config: {{topic: {redacted}, count: {COUNT}}}
value_converter: {{type: json, schemas: false}}
transforms:
  - {{name: hide, type: redact, fields: [name], replacement: "***"}}
"#,
            sink = plugins::path("log-sink").display(),
        ),
    )
    .expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let log = wait_for(
        "the log sink to write every record",
        Duration::from_secs(120),
        || {
            let log = sluice.log_text();
            let seen: BTreeSet<u64> = logged(&log, &prefix)
                .iter()
                .filter_map(|l| l["value"]["n"].as_u64())
                .collect();
            (seen.len() as u64 >= COUNT).then_some(log)
        },
    );
    wait_for("the redacted topic", Duration::from_secs(60), || {
        (kafka::end_offsets(&redacted).values().sum::<i64>() as u64 >= COUNT).then_some(())
    });
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    // Source: every number once, split over the two tasks, key = the number.
    let records = json_values(&counted);
    let numbers: Vec<u64> = records
        .iter()
        .map(|(_, v)| v["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(
        numbers.iter().copied().collect::<BTreeSet<_>>(),
        (0..COUNT).collect::<BTreeSet<_>>()
    );
    assert_eq!(numbers.len() as u64, COUNT, "a number was produced twice");
    for (key, value) in &records {
        let n = value["n"].as_u64().expect("n");
        assert_eq!(key, &n.to_string());
        assert_eq!(value["task"].as_u64(), Some(n % 2), "{value}");
    }

    // Sink: each record logged with its topic, offset, key and value.
    let lines = logged(&log, &prefix);
    let by_n: BTreeMap<u64, &Value> = lines
        .iter()
        .map(|l| (l["value"]["n"].as_u64().expect("n"), l))
        .collect();
    assert_eq!(by_n.len() as u64, COUNT);
    for (n, line) in by_n {
        assert_eq!(line["topic"], counted.as_str());
        assert_eq!(line["key"], n.to_string().as_str(), "{line}");
        assert!(line["offset"].as_i64().is_some_and(|o| o >= 0), "{line}");
    }

    // Transform: every datagen record, its name replaced, the rest as generated.
    let records = json_values(&redacted);
    assert_eq!(records.len() as u64, COUNT);
    let mut seqs = BTreeSet::new();
    for (key, value) in &records {
        let seq = value["seq"].as_u64().expect("seq");
        assert_eq!(key, &seq.to_string());
        assert_eq!(value["name"], "***", "{value}");
        // The plugin's result was fitted back to the datagen schema, so the converter writes the
        // decimal as Kafka Connect does (base64 of the unscaled bytes), as without the transform.
        let (_, generated) = sluice_connector_datagen::record_for(seq);
        let generated = generated.as_struct().expect("struct").clone();
        let Some(sluice_connector_api::Value::Decimal(amount)) = generated.get("amount") else {
            panic!("datagen amount is a decimal");
        };
        use base64::Engine as _;
        let amount = base64::engine::general_purpose::STANDARD.encode(amount.to_bytes());
        assert_eq!(value["amount"], amount.as_str(), "{value}");
        assert_eq!(
            value["created"],
            generated.get("created").expect("created").to_plain_json(),
            "{value}"
        );
        seqs.insert(seq);
    }
    assert_eq!(seqs, (0..COUNT).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_plugins_fail_only_their_own_task_with_the_reason_in_its_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let good = unique("wasm-good");
    let plugin = plugins::path("misbehave");
    // (mode, extra plugin config, what the task's trace must say)
    let cases = [
        (
            "loop",
            "call_timeout: 1s",
            "call `apply` exceeded the 1s time limit",
        ),
        (
            "alloc",
            "memory_limit_mib: 16",
            "exceeded the 16 MiB memory limit",
        ),
        ("trap", "", "deliberate panic"),
        // Waits in a WASI sleep: no wasm runs, so only a wall-clock deadline ends the call.
        (
            "sleep",
            "call_timeout: 1s",
            "call `apply` exceeded the 1s time limit",
        ),
        ("file", "path: /etc/hostname", "open /etc/hostname"),
        ("socket", "address: \"127.0.0.1:9\"", "connect 127.0.0.1:9"),
    ];
    let mut text = format!(
        "name: {good}\nconnector: datagen\nconfig: {{topic: {good}, rate: 200}}\nvalue_converter: {{type: json, schemas: false}}\n"
    );
    let mut names = Vec::new();
    for (mode, extra, _) in &cases {
        let name = format!("{good}-{mode}");
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(", {extra}")
        };
        text.push_str(&format!(
            "---\nname: {name}\nconnector: datagen\nconfig: {{topic: {name}}}\nvalue_converter: {{type: json, schemas: false}}\ntransforms:\n  - {{name: bad, type: wasm, plugin: {}, mode: {mode}{extra}}}\n",
            plugin.display()
        ));
        names.push(name);
    }
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, text).expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let url = format!("http://127.0.0.1:{port}");

    for ((mode, _, reason), name) in cases.iter().zip(&names) {
        let trace = failed_trace(&url, name, mode).await;
        assert!(trace.contains("plugin misbehave"), "{mode}: {trace}");
        assert!(
            trace.contains(reason),
            "{mode}: expected `{reason}` in: {trace}"
        );
        // Nothing went through the failed transform.
        assert_eq!(kafka::end_offsets(name).values().sum::<i64>(), 0, "{mode}");
    }

    // The well-behaved connector on the same worker keeps running and producing.
    assert_still_producing(&url, &good).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasm_transform_gives_the_same_records_as_the_built_in_one() {
    const COUNT: u64 = 400;
    let dir = tempfile::tempdir().expect("temp dir");
    let native = unique("mask-native");
    let wasm = unique("mask-wasm");
    let worker = write_worker(dir.path(), "");
    let pipeline = dir.path().join("pipeline.yaml");
    // Schemas on: the WASM result keeps the datagen schema (decimal, timestamp) when it fits.
    std::fs::write(
        &pipeline,
        format!(
            r#"name: {native}
connector: datagen
config: {{topic: {native}, count: {COUNT}}}
value_converter: {{type: json, schemas: true}}
transforms:
  - {{name: mask, type: MaskField$Value, fields: name, replacement: "***"}}
---
name: {wasm}
connector: datagen
config: {{topic: {wasm}, count: {COUNT}}}
value_converter: {{type: json, schemas: true}}
transforms:
  - {{name: mask, type: wasm, plugin: {}, fields: [name], replacement: "***"}}
"#,
            plugins::path("redact").display()
        ),
    )
    .expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    for topic in [&native, &wasm] {
        wait_for("every record", Duration::from_secs(90), || {
            (kafka::end_offsets(topic).values().sum::<i64>() as u64 >= COUNT).then_some(())
        });
    }
    assert!(sluice.terminate(), "sluice did not stop cleanly");
    let by_key = |topic: &str| -> BTreeMap<String, String> {
        kafka::read_all(topic)
            .iter()
            .map(|r| {
                (
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                    r.value_text(),
                )
            })
            .collect()
    };
    let (a, b) = (by_key(&native), by_key(&wasm));
    assert_eq!(a.len() as u64, COUNT);
    let first = a.values().next().expect("a record");
    assert!(
        first.contains("\"schema\"") && first.contains("\"***\""),
        "{first}"
    );
    assert_eq!(a, b, "the WASM transform and MaskField disagree");
}

/// Serves `GET /greeting` with `body` on a free loopback port; returns the port.
fn greeting_server(body: String) -> u16 {
    let app = axum::Router::new().route(
        "/greeting",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    sluice_tests::serve(app).port()
}

/// Asserts that connector `good` (REST at `rest`), whose topic is `good` too, is RUNNING and
/// still writing records.
async fn assert_still_producing(rest: &str, good: &str) {
    let (_, status) = call(
        reqwest::Method::GET,
        &format!("{rest}/connectors/{good}/status"),
        None,
    )
    .await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    let before: i64 = kafka::end_offsets(good).values().sum();
    wait_for(
        "records still flowing after the failures",
        Duration::from_secs(30),
        || (kafka::end_offsets(good).values().sum::<i64>() > before + 50).then_some(()),
    );
}

/// Waits for task 0 of connector `name` to be FAILED (REST at `rest`); returns its trace.
async fn failed_trace(rest: &str, name: &str, what: &str) -> String {
    wait_async(
        &format!("the {what} task FAILED"),
        Duration::from_secs(60),
        || async {
            // Until the worker serves REST, requests fail: keep waiting.
            let status: Value = reqwest::get(format!("{rest}/connectors/{name}/status"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let task = &status["tasks"][0];
            (task["state"] == "FAILED")
                .then(|| task["trace"].as_str().unwrap_or_default().to_owned())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_open_listed_directories_and_hosts_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let granted = dir.path().join("granted");
    std::fs::create_dir(&granted).expect("granted dir");
    let secret = unique("granted-content");
    std::fs::write(granted.join("secret.txt"), &secret).expect("write");
    std::fs::write(dir.path().join("outside.txt"), "not granted").expect("write");
    let greeting = unique("hello");
    let http_port = greeting_server(greeting.clone());
    let port = free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let plugin = plugins::path("misbehave");
    let base = unique("wasm-grant");
    let url = format!("http://127.0.0.1:{http_port}/greeting");
    // (name, plugin config)
    let cases = [
        (
            "file-ok",
            format!(
                "mode: file, path: {}, read_only_dirs: [{}]",
                granted.join("secret.txt").display(),
                granted.display()
            ),
        ),
        (
            "http-ok",
            format!("mode: http, url: \"{url}\", allowed_hosts: [127.0.0.1]"),
        ),
        (
            "file-outside",
            format!(
                "mode: file, path: {}, read_only_dirs: [{}]",
                dir.path().join("outside.txt").display(),
                granted.display()
            ),
        ),
        (
            "http-denied",
            format!("mode: http, url: \"{url}\", allowed_hosts: [example.com]"),
        ),
    ];
    let mut text = String::new();
    for (case, config) in &cases {
        let name = format!("{base}-{case}");
        text.push_str(&format!(
            "---\nname: {name}\nconnector: datagen\nconfig: {{topic: {name}, count: 20}}\nvalue_converter: {{type: json, schemas: false}}\ntransforms:\n  - {{name: probe, type: wasm, plugin: {}, {config}}}\n",
            plugin.display()
        ));
    }
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, text).expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);

    // Granted: every record went through and carries what the plugin read.
    for (case, header, expected) in [
        ("file-ok", "file", secret.clone()),
        ("http-ok", "http", format!("200 {greeting}")),
    ] {
        let topic = format!("{base}-{case}");
        let records = wait_for(
            &format!("20 records in {topic}"),
            Duration::from_secs(60),
            || {
                let records = kafka::read_all(&topic);
                (records.len() == 20).then_some(records)
            },
        );
        for r in &records {
            let value = r
                .headers
                .iter()
                .find(|(k, _)| k == header)
                .and_then(|(_, v)| v.clone());
            assert_eq!(
                value.as_deref(),
                Some(expected.as_bytes()),
                "{case}: header {header} of {r:?}"
            );
        }
    }

    // Not granted: the task fails, saying why; nothing was written.
    let rest = format!("http://127.0.0.1:{port}");
    let outside = format!("open {}", dir.path().join("outside.txt").display());
    for (case, reason) in [
        ("file-outside", outside.as_str()),
        ("http-denied", "HttpRequestDenied"),
    ] {
        let name = format!("{base}-{case}");
        let trace = failed_trace(&rest, &name, case).await;
        assert!(
            trace.contains(reason),
            "{case}: expected `{reason}` in: {trace}"
        );
        assert_eq!(kafka::end_offsets(&name).values().sum::<i64>(), 0, "{case}");
    }
    assert!(sluice.terminate(), "sluice did not stop cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn connector_plugins_lists_wasm_plugins_and_transforms_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let worker = write_worker(
        dir.path(),
        &format!(
            "plugins_dir: {}\nrest:\n  listen: 127.0.0.1:{port}\n",
            plugins::dir().display()
        ),
    );
    let pipeline = dir.path().join("pipeline.yaml");
    let name = unique("wasm-listing");
    std::fs::write(
        &pipeline,
        format!("name: {name}\nconnector: datagen\nconfig: {{topic: {name}, count: 10}}\n"),
    )
    .expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let url = format!("http://127.0.0.1:{port}/connector-plugins");
    let listed = |query: &'static str| {
        let url = format!("{url}{query}");
        async move {
            let plugins: Value = wait_async("the REST API", Duration::from_secs(30), || async {
                reqwest::get(&url).await.ok()?.json().await.ok()
            })
            .await;
            plugins
                .as_array()
                .expect("a list")
                .iter()
                .map(|p| {
                    (
                        p["class"].as_str().unwrap_or_default().to_owned(),
                        p["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect::<BTreeSet<_>>()
        }
    };
    let pair = |c: &str, t: &str| (c.to_owned(), t.to_owned());
    let connectors = listed("").await;
    // Source and sink plugins from the plugins directory are connector types.
    assert!(
        connectors.contains(&pair("counter", "source")),
        "{connectors:?}"
    );
    assert!(
        connectors.contains(&pair("log-sink", "sink")),
        "{connectors:?}"
    );
    assert!(
        connectors.contains(&pair("datagen", "source")),
        "{connectors:?}"
    );
    assert!(
        connectors.iter().all(|(_, t)| t == "source" || t == "sink"),
        "{connectors:?}"
    );
    let all = listed("?connectorsOnly=false").await;
    assert!(connectors.is_subset(&all));
    for expected in [
        pair("redact", "transformation"),
        pair("misbehave", "transformation"),
        pair("wasm", "transformation"),
        pair(
            "org.apache.kafka.connect.transforms.MaskField$Value",
            "transformation",
        ),
        pair(
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            "predicate",
        ),
    ] {
        assert!(all.contains(&expected), "{expected:?} missing from {all:?}");
    }
    assert!(sluice.terminate(), "sluice did not stop cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_source_and_sink_plugins_fail_only_their_own_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let good = unique("wasm-io-good");
    // (connector name suffix, connector, mode, sandbox config, what the trace must say)
    let cases = [
        (
            "source-trap",
            "misbehave-source",
            "trap",
            "",
            "deliberate panic in poll",
        ),
        (
            "source-loop",
            "misbehave-source",
            "loop",
            ", call_timeout: 1s",
            "call `poll` exceeded the 1s time limit",
        ),
        (
            "source-alloc",
            "misbehave-source",
            "alloc",
            ", memory_limit_mib: 16",
            "exceeded the 16 MiB memory limit",
        ),
        (
            "source-sleep",
            "misbehave-source",
            "sleep",
            ", call_timeout: 1s",
            "call `poll` exceeded the 1s time limit",
        ),
        (
            "sink-trap",
            "misbehave-sink",
            "trap",
            "",
            "deliberate panic in put",
        ),
        (
            "sink-sleep",
            "misbehave-sink",
            "sleep",
            ", call_timeout: 1s",
            "call `put` exceeded the 1s time limit",
        ),
        (
            "sink-loop",
            "misbehave-sink",
            "loop",
            ", call_timeout: 1s",
            "call `put` exceeded the 1s time limit",
        ),
    ];
    let mut text = format!(
        "name: {good}\nconnector: datagen\nconfig: {{topic: {good}, rate: 200}}\nvalue_converter: {{type: json, schemas: false}}\n"
    );
    for (case, plugin, mode, sandbox, _) in &cases {
        // Sinks read the healthy connector's topic (plain JSON).
        let (topics, converter) = if plugin.ends_with("sink") {
            (
                format!(", topics: [{good}]"),
                "value_converter: {type: json, schemas: false}\n",
            )
        } else {
            (String::new(), "")
        };
        text.push_str(&format!(
            "---\nname: {good}-{case}\nconnector: wasm\nconfig: {{plugin: {}, mode: {mode}{topics}{sandbox}}}\n{converter}",
            plugins::path(plugin).display()
        ));
    }
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, text).expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let url = format!("http://127.0.0.1:{port}");

    for (case, plugin, _, _, reason) in &cases {
        let trace = failed_trace(&url, &format!("{good}-{case}"), case).await;
        assert!(
            trace.contains(&format!("plugin {plugin}")),
            "{case}: {trace}"
        );
        assert!(
            trace.contains(reason),
            "{case}: expected `{reason}` in: {trace}"
        );
    }

    // The well-behaved connector on the same worker keeps running and producing.
    assert_still_producing(&url, &good).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn validating_a_plugin_whose_spec_blocks_answers_with_the_timeout_and_the_worker_keeps_serving()
 {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    // REST configs may name plugins under the test plugins' directory.
    let worker = write_worker(
        dir.path(),
        &format!(
            "rest:\n  listen: 127.0.0.1:{port}\nallowed_paths: [{}]\n",
            plugins::dir().display()
        ),
    );
    let good = unique("wasm-spec-good");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {good}\nconnector: datagen\nconfig: {{topic: {good}, rate: 200}}\nvalue_converter: {{type: json, schemas: false}}\n"
        ),
    )
    .expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    let url = format!("http://127.0.0.1:{port}");
    let _: Value = wait_async("the REST API", Duration::from_secs(30), || async {
        reqwest::get(format!("{url}/connectors"))
            .await
            .ok()?
            .json()
            .await
            .ok()
    })
    .await;

    // `spec` waits an hour in a WASI sleep; loading gives up at the default 5s call timeout.
    let plugin = plugins::dir().join("blocking").join("blocking-spec.wasm");
    let validate_url = format!("{url}/connector-plugins/wasm/config/validate");
    let validate = call(
        reqwest::Method::PUT,
        &validate_url,
        Some(serde_json::json!({"connector.class": "wasm", "plugin": plugin})),
    );
    let (code, validation) = tokio::time::timeout(Duration::from_secs(120), validate)
        .await
        .expect("validate answers instead of waiting on the plugin");
    assert_eq!(code, 200, "{validation}");
    let errors: Vec<String> = validation["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .filter(|c| c["value"]["name"] == "plugin")
        .flat_map(|c| c["value"]["errors"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("plugin blocking-spec: call `spec` exceeded the 5s time limit")),
        "{validation}"
    );

    // The worker still serves and runs its connector.
    assert_still_producing(&url, &good).await;
    assert!(sluice.terminate(), "sluice did not stop cleanly");
}
