//! postgres-cdc against a real PostgreSQL (wal_level=logical) and a real broker.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value as Json, json};
use sluice_tests::postgres::{self, Postgres};
use sluice_tests::{Sluice, kafka, unique, wait_for, write_worker};

struct Cdc {
    dir: tempfile::TempDir,
    worker: PathBuf,
    pipeline: PathBuf,
    prefix: String,
    slot: String,
}

fn cdc(pg: &Postgres, db: &str, tables: &str, extra: &str) -> Cdc {
    let dir = tempfile::tempdir().expect("temp dir");
    let worker = write_worker(dir.path(), "");
    let prefix = unique("cdc").replace('-', "_");
    let slot = format!("slot_{}", prefix.trim_start_matches("cdc_"));
    let pipeline = dir.path().join("cdc.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {prefix}\nconnector: postgres-cdc\nconfig:\n  url: {}\n  slot: {slot}\n  publication: pub_{slot}\n  \
             tables: [{tables}]\n  topic_prefix: {prefix}\n  heartbeat_interval: 500ms\n{extra}\
             key_converter: {{type: json}}\n",
            pg.url(db)
        ),
    )
    .expect("write pipeline");
    Cdc {
        dir,
        worker,
        pipeline,
        prefix,
        slot,
    }
}

impl Cdc {
    fn run(&self) -> Sluice {
        Sluice::run(self.dir.path(), &self.worker, &[&self.pipeline])
    }

    fn topic(&self, table: &str) -> String {
        format!("{}.public.{table}", self.prefix)
    }

    fn offsets_file(&self) -> PathBuf {
        self.dir.path().join("offsets.json")
    }
}

/// Decoded events of a topic: (partition, offset, key payload, value payload or null).
async fn events(topic: &str) -> Vec<(i32, i64, Json, Json)> {
    let topic = topic.to_owned();
    let records = tokio::task::spawn_blocking(move || kafka::read_all(&topic))
        .await
        .expect("read");
    records
        .into_iter()
        .map(|r| {
            let key: Json = r.key.as_deref().map_or(Json::Null, |k| {
                serde_json::from_slice(k).unwrap_or(Json::Null)
            });
            let value: Json = r.value.as_deref().map_or(Json::Null, |v| {
                serde_json::from_slice(v).expect("json value")
            });
            (r.partition, r.offset, key, value)
        })
        .collect()
}

fn wait_slot(pg: &Postgres, db: &str, slot: &str) {
    wait_for("the replication slot", Duration::from_secs(120), || {
        let active = pg.psql(
            db,
            &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        );
        (active == "t").then_some(())
    });
}

async fn wait_events(topic: &str, n: usize) -> Vec<(i32, i64, Json, Json)> {
    for _ in 0..600 {
        let got = events(topic).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{topic} did not reach {n} events");
}

/// A payload with the volatile parts (times, LSNs, transaction ids) replaced.
fn normalised(mut payload: Json) -> Json {
    payload["ts_ms"] = json!("<ts>");
    if let Some(source) = payload.get_mut("source") {
        for field in ["ts_ms", "txId", "lsn"] {
            if !source[field].is_null() {
                source[field] = json!(format!("<{field}>"));
            }
        }
    }
    payload
}

const ALL_TYPES: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE items (
  id int4 PRIMARY KEY, small int2, big int8, price numeric(10,2), free numeric, ratio float8, f4 float4,
  flag bool, name text, label varchar(20), data bytea, uid uuid, doc jsonb, doc2 json, day date, t time,
  ts timestamp, tstz timestamptz, tags text[], nums int4[], feeling mood);
CREATE TABLE notes (id bigint PRIMARY KEY, body text);";

const ROW_1: &str = "INSERT INTO items VALUES (1, -2, 9000000000, 12.30, 1.5, 2.25, 0.5, true, 'héllo \"q\"', 'lbl',
  '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": 1}', '[1,2]', '2024-02-29', '13:45:30.5',
  '2024-02-29 13:45:30.123', '2024-02-29 13:45:30+02', '{x,\"y z\",NULL}', '{1,2,3}', 'happy')";

fn expected_row_1() -> Json {
    json!({
        "id": 1, "small": -2, "big": 9000000000i64, "price": "BM4=", "free": {"scale": 1, "value": "Dw=="},
        "ratio": 2.25, "f4": 0.5, "flag": true, "name": "héllo \"q\"", "label": "lbl", "data": "AP8=",
        "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "doc": "{\"a\": 1}", "doc2": "[1,2]",
        "day": 19782, "t": 49530500, "ts": 1709214330123i64, "tstz": "2024-02-29T11:45:30Z",
        "tags": ["x", "y z", null], "nums": [1, 2, 3], "feeling": "happy"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_and_operation_arrives_in_commit_order_as_debezium_events() {
    let pg = postgres::shared();
    let db = pg.database("types");
    pg.psql(&db, ALL_TYPES);
    pg.psql(
        &db,
        "INSERT INTO items (id, name) VALUES (0, 'before the snapshot')",
    );
    let cdc = cdc(pg, &db, "public.items, public.notes", "");
    kafka::create_topic(&cdc.topic("items"), 1).await;
    kafka::create_topic(&cdc.topic("notes"), 1).await;
    let sluice = cdc.run();
    wait_slot(pg, &db, &cdc.slot);
    pg.psql(
        &db,
        &format!("BEGIN; {ROW_1}; INSERT INTO notes VALUES (1, 'first'), (2, 'second'); COMMIT;"),
    );
    pg.psql(
        &db,
        "UPDATE items SET name = 'changed', nums = '{}' WHERE id = 1",
    );
    pg.psql(&db, "DELETE FROM notes WHERE id = 1");
    pg.psql(&db, "TRUNCATE notes");
    let items = wait_events(&cdc.topic("items"), 3).await;
    let notes = wait_events(&cdc.topic("notes"), 5).await;
    assert!(sluice.terminate());

    let ops = |events: &[(i32, i64, Json, Json)]| -> Vec<String> {
        events
            .iter()
            .map(|(_, _, _, v)| {
                v["payload"]["op"]
                    .as_str()
                    .unwrap_or("tombstone")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ops(&items), ["r", "c", "u"]);
    assert_eq!(ops(&notes), ["c", "c", "d", "tombstone", "t"]);

    // Keys are the primary key as a struct with its schema.
    assert_eq!(
        items[1].2,
        json!({"schema": {"type": "struct", "fields": [{"type": "int32", "optional": false, "field": "id"}],
               "optional": false, "name": format!("{}.public.items.Key", cdc.prefix)}, "payload": {"id": 1}})
    );

    // The snapshot read.
    let read = normalised(items[0].3["payload"].clone());
    assert_eq!(read["op"], "r");
    assert_eq!(read["after"]["name"], "before the snapshot");
    assert_eq!(read["source"]["snapshot"], "true");

    // An insert with every type, as Debezium (time.precision.mode=connect) writes it.
    let create = normalised(items[1].3["payload"].clone());
    let source = json!({
        "version": "sluice-0.1.0", "connector": "postgresql", "name": cdc.prefix, "ts_ms": "<ts_ms>",
        "snapshot": "false", "db": db, "sequence": null, "schema": "public", "table": "items",
        "txId": "<txId>", "lsn": "<lsn>", "xmin": null
    });
    assert_eq!(
        create,
        json!({"before": null, "after": expected_row_1(), "source": source, "op": "c", "ts_ms": "<ts>"})
    );

    // An update: REPLICA IDENTITY DEFAULT has no before image.
    let update = normalised(items[2].3["payload"].clone());
    let mut after = expected_row_1();
    after["name"] = json!("changed");
    after["nums"] = json!([]);
    assert_eq!(
        update,
        json!({"before": null, "after": after, "source": source, "op": "u", "ts_ms": "<ts>"})
    );

    // A delete carries the key in `before`, then a tombstone with the same key.
    let mut note_source = source.clone();
    note_source["table"] = json!("notes");
    let delete = normalised(notes[2].3["payload"].clone());
    assert_eq!(
        delete,
        json!({"before": {"id": 1, "body": null}, "after": null, "source": note_source, "op": "d", "ts_ms": "<ts>"})
    );
    assert_eq!(notes[3].2["payload"], json!({"id": 1}));
    assert_eq!(notes[3].3, Json::Null);
    let truncate = normalised(notes[4].3["payload"].clone());
    assert_eq!(
        truncate,
        json!({"before": null, "after": null, "source": note_source, "op": "t", "ts_ms": "<ts>"})
    );

    // The value schema names logical types as Kafka Connect and Debezium do.
    let fields = &items[1].3["schema"]["fields"][1]["fields"];
    let field = |name: &str| {
        fields
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["field"] == name)
            .cloned()
            .expect(name)
    };
    assert_eq!(
        field("price")["name"],
        "org.apache.kafka.connect.data.Decimal"
    );
    assert_eq!(
        field("price")["parameters"],
        json!({"scale": "2", "connect.decimal.precision": "10"})
    );
    assert_eq!(
        field("ts")["name"],
        "org.apache.kafka.connect.data.Timestamp"
    );
    assert_eq!(field("tstz")["name"], "io.debezium.time.ZonedTimestamp");
    assert_eq!(
        field("feeling")["parameters"],
        json!({"allowed": "sad,ok,happy"})
    );
    assert_eq!(field("id")["optional"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_while_writing_ends_with_the_exact_table_state() {
    let pg = postgres::shared();
    let db = pg.database("snap");
    pg.psql(
        &db,
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, note text)",
    );
    pg.psql(
        &db,
        "INSERT INTO accounts SELECT g, g % 1000, 'n' || g FROM generate_series(1, 100000) g",
    );
    let cdc = cdc(pg, &db, "public.accounts", "  snapshot_chunk_size: 5000\n");
    let sluice = cdc.run();
    // 50,000 changes in 500 transactions, written while the snapshot runs.
    let mut script = String::new();
    for t in 0..500 {
        script.push_str("BEGIN;");
        for i in 0..100 {
            let n = t * 100 + i;
            match n % 5 {
                0 => script.push_str(&format!(
                    "INSERT INTO accounts VALUES ({}, {n}, 'new');",
                    100_001 + n
                )),
                1 => script.push_str(&format!(
                    "DELETE FROM accounts WHERE id = {};",
                    1 + (n * 7) % 100_000
                )),
                _ => script.push_str(&format!(
                    "UPDATE accounts SET balance = balance + 1, note = 'u{n}' WHERE id = {};",
                    1 + (n * 13) % 100_000
                )),
            }
        }
        script.push_str("COMMIT;\n");
    }
    let script_path = cdc.dir.path().join("changes.sql");
    std::fs::write(&script_path, script).expect("script");
    let writer_url = pg.url(&db);
    let writer = std::thread::spawn(move || {
        let status = std::process::Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &writer_url, "-f"])
            .arg(&script_path)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("psql");
        assert!(status.success(), "change script failed");
    });
    writer.join().expect("writer");
    let marker = pg.psql(
        &db,
        "INSERT INTO accounts VALUES (999999999, 0, 'last') RETURNING id",
    );
    assert_eq!(marker, "999999999");
    let topic = cdc.topic("accounts");
    wait_for(
        "the last change in the topic",
        Duration::from_secs(300),
        || {
            kafka::read_all(&topic)
                .iter()
                .any(|r| r.value_text().contains("\"last\""))
                .then_some(())
        },
    );
    assert!(sluice.terminate());

    // Last event per key (keys stay in one partition, so offset order is their order).
    let mut last: HashMap<i64, (i64, Json)> = HashMap::new();
    let mut snapshot_reads = 0;
    for (_, offset, key, value) in events(&topic).await {
        let id = key["payload"]["id"].as_i64().expect("key id");
        if value["payload"]["op"] == "r" {
            snapshot_reads += 1;
        }
        let state = if value.is_null() || value["payload"]["op"] == "d" {
            Json::Null
        } else {
            value["payload"]["after"].clone()
        };
        if last.get(&id).is_none_or(|(o, _)| *o < offset) {
            last.insert(id, (offset, state));
        }
    }
    assert!(
        snapshot_reads >= 90_000,
        "the snapshot read {snapshot_reads} rows"
    );
    let rows = pg.psql(
        &db,
        "SELECT id, balance, coalesce(note, '') FROM accounts ORDER BY id",
    );
    let mut table: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    for line in rows.lines() {
        let mut parts = line.split('|');
        let id = parts.next().and_then(|p| p.parse().ok()).expect("id");
        let balance = parts.next().and_then(|p| p.parse().ok()).expect("balance");
        table.insert(id, (balance, parts.next().unwrap_or_default().to_owned()));
    }
    for (id, (balance, note)) in &table {
        let (_, state) = last
            .get(id)
            .unwrap_or_else(|| panic!("row {id} never appeared in the topic"));
        assert_eq!(state["balance"].as_i64(), Some(*balance), "row {id}");
        assert_eq!(state["note"].as_str(), Some(note.as_str()), "row {id}");
    }
    for (id, (_, state)) in &last {
        if !table.contains_key(id) {
            assert!(
                state.is_null(),
                "row {id} was deleted but its last event is {state}"
            );
        }
    }
}

fn stored_lsn(path: &Path) -> Option<u64> {
    let stored: Json = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    stored["offsets"][0]["value"]["lsn"].as_u64()
}

fn slot_lsn(pg: &Postgres, db: &str, slot: &str) -> u64 {
    let text = pg.psql(db, &format!("SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = '{slot}'"));
    text.parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_three_times_during_200k_changes_loses_nothing() {
    let pg = postgres::shared();
    let db = pg.database("crash");
    pg.psql(
        &db,
        "CREATE TABLE events (id bigint PRIMARY KEY, payload text)",
    );
    let cdc = cdc(pg, &db, "public.events", "  max_batch: 1000\n");
    let url = pg.url(&db);
    let mut sluice = cdc.run();
    wait_slot(pg, &db, &cdc.slot);
    // 200,000 inserts in 2,000 transactions, written while sluice is killed and restarted.
    let writer = std::thread::spawn(move || {
        for chunk in 0..20 {
            let mut script = String::new();
            for t in 0..100 {
                let start = (chunk * 100 + t) * 100;
                script.push_str(&format!(
                    "INSERT INTO events SELECT g, 'p' || g FROM generate_series({}, {}) g;\n",
                    start,
                    start + 99
                ));
            }
            let status = std::process::Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    &url,
                    "-c",
                    &script,
                ])
                .status()
                .expect("psql");
            assert!(status.success());
        }
    });
    for round in 0..3u64 {
        // Kill at a different point each round: after some progress past the last commit.
        let before = stored_lsn(&cdc.offsets_file()).unwrap_or(0);
        wait_for("progress before the kill", Duration::from_secs(120), || {
            (stored_lsn(&cdc.offsets_file()).unwrap_or(0) > before).then_some(())
        });
        std::thread::sleep(Duration::from_millis(150 * (round + 1)));
        sluice.kill_hard();
        let stored = stored_lsn(&cdc.offsets_file()).expect("stored offset");
        let confirmed = slot_lsn(pg, &db, &cdc.slot);
        assert!(
            confirmed <= stored,
            "slot confirmed {confirmed} past the stored offset {stored}"
        );
        sluice = cdc.run();
    }
    writer.join().expect("writer");
    let topic = cdc.topic("events");
    wait_for("all 200,000 changes", Duration::from_secs(300), || {
        let records = kafka::read_all(&topic);
        let ids: std::collections::HashSet<String> = records
            .iter()
            .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
            .collect();
        (ids.len() >= 200_000).then_some(())
    });
    assert!(sluice.terminate());
    let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
    for (_, _, key, value) in events(&topic).await {
        let id = key["payload"]["id"].as_i64().expect("id");
        assert_eq!(
            value["payload"]["after"]["payload"],
            json!(format!("p{id}"))
        );
        seen.entry(id)
            .or_default()
            .push(value["payload"]["source"]["lsn"].as_i64().expect("lsn"));
    }
    let missing: Vec<i64> = (0..200_000)
        .filter(|id| !seen.contains_key(id))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "changes missing, e.g. ids {missing:?}");
    // A duplicate is the same change again (same LSN), never a different one.
    assert!(seen.values().all(|lsns| lsns.iter().all(|l| *l == lsns[0])));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_restart_mid_stream_reconnects_and_loses_nothing() {
    let pg = Postgres::start("logical");
    let db = pg.database("restart");
    pg.psql(&db, "CREATE TABLE ticks (id bigint PRIMARY KEY)");
    let cdc = cdc(&pg, &db, "public.ticks", "");
    let sluice = cdc.run();
    wait_slot(&pg, &db, &cdc.slot);
    for chunk in 0..10 {
        if chunk == 5 {
            pg.restart(Duration::from_secs(2));
        }
        pg.psql(
            &db,
            &format!(
                "INSERT INTO ticks SELECT generate_series({}, {})",
                chunk * 1000,
                chunk * 1000 + 999
            ),
        );
    }
    let topic = cdc.topic("ticks");
    wait_for(
        "all 10,000 changes after the restart",
        Duration::from_secs(180),
        || {
            (kafka::read_all(&topic)
                .iter()
                .filter(|r| r.value.is_some())
                .count()
                >= 10_000)
                .then_some(())
        },
    );
    let log = sluice.log_text();
    assert!(sluice.terminate(), "sluice did not survive the restart");
    let ids: std::collections::HashSet<i64> = events(&topic)
        .await
        .iter()
        .map(|(_, _, k, _)| k["payload"]["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 10_000);
    assert!(
        log.contains("recover replication connection") || log.contains("reconnect"),
        "the log shows no reconnect:\n{log}"
    );
}

fn run_expecting_failure(cdc: &Cdc) -> String {
    let mut sluice = cdc.run();
    assert!(
        !sluice.wait_exit(Duration::from_secs(120)),
        "sluice should refuse to run"
    );
    sluice.log_text()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_setups_fail_with_one_clear_error_each() {
    let replica = Postgres::start("replica");
    assert_eq!(replica.wal_level(), "replica");
    let db = replica.database("nowal");
    replica.psql(&db, "CREATE TABLE t (id int PRIMARY KEY)");
    let log = run_expecting_failure(&cdc(&replica, &db, "public.t", ""));
    assert!(
        log.contains("wal_level=replica; change data capture needs wal_level=logical"),
        "{log}"
    );

    let pg = postgres::shared();
    let db = pg.database("badcfg");
    pg.psql(&db, "CREATE TABLE keyless (a int, b text)");
    let log = run_expecting_failure(&cdc(pg, &db, "public.nope", ""));
    assert!(log.contains("table public.nope does not exist"), "{log}");
    let log = run_expecting_failure(&cdc(pg, &db, "public.keyless", ""));
    assert!(
        log.contains("table public.keyless has no primary key and REPLICA IDENTITY DEFAULT"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_streamed_transactions_arrive_whole_and_aborted_ones_never() {
    // A tiny decoding memory makes Postgres stream every sizeable transaction while it runs.
    let pg = Postgres::start("logical");
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let db = pg.database("stream");
    pg.psql(&db, "CREATE TABLE big (id bigint PRIMARY KEY, note text)");
    // A small memory budget per transaction, so the spool goes to disk too.
    let cdc = cdc(&pg, &db, "public.big", "  max_buffered_changes: 5000\n");
    let sluice = cdc.run();
    wait_slot(&pg, &db, &cdc.slot);
    pg.psql(
        &db,
        "BEGIN;
         INSERT INTO big SELECT g, 'kept' FROM generate_series(1, 60000) g;
         SAVEPOINT s;
         INSERT INTO big SELECT g, 'rolled back' FROM generate_series(200001, 210000) g;
         ROLLBACK TO SAVEPOINT s;
         INSERT INTO big SELECT g, 'after the savepoint' FROM generate_series(300001, 300010) g;
         COMMIT;",
    );
    pg.psql(&db, "BEGIN; INSERT INTO big SELECT g, 'aborted' FROM generate_series(400001, 430000) g; ROLLBACK;");
    pg.psql(&db, "INSERT INTO big VALUES (999999, 'last')");
    let topic = cdc.topic("big");
    wait_for("the last row", Duration::from_secs(180), || {
        kafka::read_all(&topic)
            .iter()
            .any(|r| r.value_text().contains("\"last\""))
            .then_some(())
    });
    let streamed = pg.psql(
        &db,
        &format!(
            "SELECT stream_txns FROM pg_stat_replication_slots WHERE slot_name = '{}'",
            cdc.slot
        ),
    );
    assert!(sluice.terminate());
    assert!(
        streamed.parse::<i64>().unwrap_or(0) > 0,
        "Postgres streamed no transaction ({streamed})"
    );

    let mut ids = std::collections::BTreeSet::new();
    for (_, _, key, value) in events(&topic).await {
        let id = key["payload"]["id"].as_i64().expect("id");
        let note = value["payload"]["after"]["note"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            note != "rolled back" && note != "aborted",
            "row {id} ({note}) was never committed"
        );
        ids.insert(id);
    }
    let expected: std::collections::BTreeSet<i64> = (1..=60_000)
        .chain(300_001..=300_010)
        .chain([999_999])
        .collect();
    assert_eq!(ids, expected);
}
