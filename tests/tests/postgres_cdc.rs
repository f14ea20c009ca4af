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
    kafka::wait_while_growing(
        "all 200,000 changes",
        &[&topic],
        Duration::from_secs(120),
        || {
            let records = kafka::read_all(&topic);
            let ids: std::collections::HashSet<String> = records
                .iter()
                .map(|r| String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned())
                .collect();
            (ids.len() >= 200_000).then_some(())
        },
    );
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
        if [3, 5, 7].contains(&chunk) {
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
    // The reader's own reconnect (fresh connection, partial transaction dropped), not a
    // recovery inside the replication library that the reader does not see.
    assert!(
        log.contains("replication connection lost; reconnecting")
            && log.contains("replication reconnected"),
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

/// A table of the CDC equality workload: its name, DDL, seed rows and key columns.
struct Shape {
    name: &'static str,
    ddl: &'static str,
    seed: &'static str,
    key: &'static [&'static str],
}

/// Three widths: 3 columns, 4 with a composite key and REPLICA IDENTITY FULL, 9 with NULLs.
fn shapes(wide_first: bool) -> [Shape; 3] {
    // Snapshots read tables in name order: the names put the widths in the order wanted.
    let (narrow, wide) = if wide_first {
        ("c_narrow", "a_wide")
    } else {
        ("a_narrow", "c_wide")
    };
    [
        Shape {
            name: narrow,
            ddl: "(id int8 PRIMARY KEY, label text, n int4)",
            seed: "SELECT g, 'n' || g, g % 100 FROM generate_series(1, {rows}) g",
            key: &["id"],
        },
        Shape {
            name: "b_mid",
            ddl: "(k1 int4, k2 text, v text, amount int8, PRIMARY KEY (k1, k2))",
            seed: "SELECT g % 500, 'k' || g, 'v' || g, g FROM generate_series(1, {rows}) g",
            key: &["k1", "k2"],
        },
        Shape {
            name: wide,
            ddl: "(id int8 PRIMARY KEY, c1 text, c2 int4, c3 int2, c4 bool, c5 varchar(40), c6 int8, c7 text, c8 bool)",
            seed: "SELECT g, 'w' || g, g, (g % 1000)::int2, g % 2 = 0, 'v' || g, g * 3, NULL, NULL FROM generate_series(1, {rows}) g",
            key: &["id"],
        },
    ]
}

/// A small deterministic random number generator (xorshift), so a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One transaction of mixed changes over the three tables: inserts, updates, deletes and updates
/// of the primary key (single and composite). `fresh` hands out keys never used before.
fn mixed_transaction(shapes: &[Shape; 3], rng: &mut Rng, fresh: &mut u64, rows: u64) -> String {
    let [narrow, mid, wide] = shapes.each_ref().map(|s| s.name);
    let mut sql = String::from("BEGIN;\n");
    for _ in 0..(3 + rng.below(4)) {
        *fresh += 1;
        let (f, r, k1) = (*fresh, 1 + rng.below(rows), rng.below(500));
        let pick = |t: &str| format!("(SELECT id FROM {t} WHERE id >= {r} ORDER BY id LIMIT 1)");
        let pick_mid = format!("(SELECT ctid FROM {mid} WHERE k1 = {k1} LIMIT 1)");
        sql.push_str(&match rng.below(12) {
            0 => format!("INSERT INTO {narrow} VALUES ({f}, 'i{f}', {r});\n"),
            1 => format!("UPDATE {narrow} SET label = 'u{f}', n = n + 1 WHERE id = {};\n", pick(narrow)),
            2 => format!("UPDATE {narrow} SET id = {f} WHERE id = {};\n", pick(narrow)),
            3 => format!("DELETE FROM {narrow} WHERE id = {};\n", pick(narrow)),
            4 => format!("INSERT INTO {mid} VALUES ({k1}, 'f{f}', 'i{f}', {f});\n"),
            5 => format!("UPDATE {mid} SET v = 'u{f}', amount = amount + 1 WHERE ctid = {pick_mid};\n"),
            6 => format!("UPDATE {mid} SET k1 = {}, k2 = 'p{f}' WHERE ctid = {pick_mid};\n", rng.below(500)),
            7 if rng.below(2) == 0 => format!("DELETE FROM {mid} WHERE ctid = {pick_mid};\n"),
            // A value too large to keep inline (stored out of line, TOAST), then its row re-keyed
            // without touching it: the new row arrives without it.
            7 => format!(
                "INSERT INTO {mid} VALUES ({k1}, 'g{f}', (SELECT string_agg(md5(g::text || '{f}'), '') FROM generate_series(1, 200) g), {f});\n\
                 UPDATE {mid} SET k2 = 'q{f}' WHERE ctid = (SELECT ctid FROM {mid} WHERE k2 LIKE 'g%' ORDER BY k2 LIMIT 1);\n"
            ),
            8 => format!(
                "INSERT INTO {wide} VALUES ({f}, 'i{f}', {r}, 1, true, NULL, {f}, repeat('x', {}), false);\n",
                rng.below(300)
            ),
            9 => format!("UPDATE {wide} SET c1 = NULL, c4 = NOT c4, c7 = 'u{f}' WHERE id = {};\n", pick(wide)),
            10 => format!("UPDATE {wide} SET id = {f}, c2 = c2 + 1 WHERE id = {};\n", pick(wide)),
            _ => format!("DELETE FROM {wide} WHERE id = {};\n", pick(wide)),
        });
    }
    sql.push_str("COMMIT;\n");
    sql
}

/// A key as text: its columns' JSON values in key order.
fn key_text(shape: &Shape, fields: &serde_json::Map<String, Json>) -> String {
    shape
        .key
        .iter()
        .map(|k| fields.get(*k).map_or("?".to_owned(), Json::to_string))
        .collect::<Vec<_>>()
        .join("|")
}

/// The table as Postgres has it: key -> row.
fn table_state(pg: &Postgres, db: &str, shape: &Shape) -> BTreeMap<String, Json> {
    let text = pg.psql(
        db,
        &format!("SELECT row_to_json(t)::text FROM {} t", shape.name),
    );
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let row: Json = serde_json::from_str(line).expect("row json");
            let fields = row.as_object().expect("row object");
            (key_text(shape, fields), row.clone())
        })
        .collect()
}

/// The state a consumer that knows nothing of Sluice builds from the topic: the last event per
/// key wins, and a delete or a tombstone removes the key.
fn topic_state(shape: &Shape, records: &[kafka::Read]) -> BTreeMap<String, Json> {
    let mut state = BTreeMap::new();
    for r in records {
        let key: Json = serde_json::from_slice(r.key.as_deref().expect("a key")).expect("key json");
        let key = key_text(shape, key["payload"].as_object().expect("key payload"));
        let Some(value) = r.value.as_deref() else {
            state.remove(&key);
            continue;
        };
        let value: Json = serde_json::from_slice(value).expect("value json");
        match value["payload"]["op"].as_str() {
            Some("d") => {
                state.remove(&key);
            }
            _ => {
                state.insert(key, value["payload"]["after"].clone());
            }
        }
    }
    state
}

fn stored_offset(path: &Path) -> Option<Json> {
    let stored: Json = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(stored["offsets"][0]["value"].clone())
}

/// The stored offset once `ready` holds for it.
fn wait_offset(cdc: &Cdc, what: &str, ready: impl Fn(&Json) -> bool) -> Json {
    wait_for(what, Duration::from_secs(300), || {
        stored_offset(&cdc.offsets_file()).filter(|o| ready(o))
    })
}

/// Acceptance for CDC equality: three tables of 3, 4 and 9 columns, mixed changes with key
/// updates from a concurrent writer, SIGKILL during the snapshot (with rows the aborted snapshot
/// emitted deleted and re-keyed while Sluice is down) and twice during streaming.
async fn tables_and_topics_end_equal(wide_first: bool) {
    const ROWS: u64 = 20_000;
    let pg = postgres::shared();
    let db = pg.database(if wide_first { "eq_wide" } else { "eq_narrow" });
    let shapes = shapes(wide_first);
    for s in &shapes {
        pg.psql(&db, &format!("CREATE TABLE {} {}", s.name, s.ddl));
        let seed = s.seed.replace("{rows}", &ROWS.to_string());
        pg.psql(&db, &format!("INSERT INTO {} {seed}", s.name));
    }
    pg.psql(&db, "ALTER TABLE b_mid REPLICA IDENTITY FULL");
    // Listed in the config in the other order than the snapshot reads them.
    let listed: Vec<String> = shapes
        .iter()
        .rev()
        .map(|s| format!("public.{}", s.name))
        .collect();
    let cdc = cdc(
        pg,
        &db,
        &listed.join(", "),
        "  snapshot_mode: initial\n  snapshot_chunk_size: 100\n  max_batch: 200\n",
    );
    let topics: Vec<String> = shapes.iter().map(|s| cdc.topic(s.name)).collect();
    let mut sluice = cdc.run();

    // The writer keeps changing all three tables, also while Sluice is down.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (pg.url(&db), stop.clone());
        let shapes = self::shapes(wide_first);
        std::thread::spawn(move || {
            let mut rng = Rng(if wide_first { 0x9e37_79b9 } else { 0x2545_f491 });
            let mut fresh = 10 * ROWS;
            let mut batches = 0;
            while batches < 40 || !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let script: String = (0..20)
                    .map(|_| mixed_transaction(&shapes, &mut rng, &mut fresh, ROWS))
                    .collect();
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
                    .stdout(std::process::Stdio::null())
                    .status()
                    .expect("psql");
                assert!(status.success(), "the writer's psql failed");
                batches += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            batches
        })
    };

    // 1. SIGKILL during the snapshot.
    let offset = wait_offset(&cdc, "a stored snapshot offset", |o| {
        o["snapshot"] == json!(true)
    });
    sluice.kill_hard();
    let stored = stored_offset(&cdc.offsets_file()).expect("stored offset");
    assert!(
        stored["snapshot"] == json!(true) && stored.get("snapshot_completed").is_none(),
        "the kill came after the snapshot finished ({stored}); the test needs more rows"
    );
    let snapshot_lsn = offset["lsn"].as_u64().expect("snapshot lsn");
    // While Sluice is down: delete and re-key rows the aborted snapshot already emitted (from the
    // table it read first; both it and the last have an `id` key).
    let first = shapes.iter().min_by_key(|s| s.name).expect("tables");
    let emitted: Vec<i64> = kafka::read_all(&cdc.topic(first.name))
        .iter()
        .filter_map(|r| {
            let key: Json = serde_json::from_slice(r.key.as_deref()?).ok()?;
            key["payload"]["id"].as_i64()
        })
        .take(100)
        .collect();
    assert!(!emitted.is_empty(), "the aborted snapshot emitted nothing");
    for (i, id) in emitted.iter().enumerate() {
        let sql = if i % 2 == 0 {
            format!("DELETE FROM {} WHERE id = {id}", first.name)
        } else {
            format!(
                "UPDATE {} SET id = id + {} WHERE id = {id}",
                first.name,
                100 * ROWS
            )
        };
        pg.psql(&db, &sql);
    }
    sluice = cdc.run();

    // 2. and 3. SIGKILL while streaming, each after some progress past the snapshot.
    let mut streamed = snapshot_lsn;
    for round in 0..2u64 {
        let at = wait_offset(&cdc, "streaming progress", |o| {
            o.get("snapshot").is_none() && o["lsn"].as_u64().unwrap_or(0) > streamed
        });
        streamed = at["lsn"].as_u64().unwrap_or(streamed);
        std::thread::sleep(Duration::from_millis(200 * (round + 1)));
        sluice.kill_hard();
        sluice = cdc.run();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = writer.join().expect("writer");
    // The last transaction: one sentinel row per table. One slot streams in commit order, so
    // when the sentinels are in, so is everything before them.
    pg.psql(
        &db,
        &format!(
            "BEGIN; INSERT INTO {} VALUES (0, 'end', 0); INSERT INTO b_mid VALUES (-1, 'end', 'end', 0); \
             INSERT INTO {} (id) VALUES (0); COMMIT;",
            shapes[0].name, shapes[2].name
        ),
    );
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    kafka::wait_while_growing(
        "the sentinel rows",
        &topic_refs,
        Duration::from_secs(120),
        || {
            shapes
                .iter()
                .zip(&topics)
                .all(|(s, t)| {
                    let sentinel = if s.key.len() == 2 { "-1|\"end\"" } else { "0" };
                    topic_state(s, &kafka::read_all(t)).contains_key(sentinel)
                })
                .then_some(())
        },
    );
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let mut key_changes = 0;
    for (shape, topic) in shapes.iter().zip(&topics) {
        let records = kafka::read_all(topic);
        let expected = table_state(pg, &db, shape);
        let got = topic_state(shape, &records);
        let missing: Vec<&String> = expected
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(5)
            .collect();
        let stale: Vec<&String> = got
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .take(5)
            .collect();
        let differ: Vec<&String> = expected
            .iter()
            .filter(|(k, row)| got.get(*k).is_some_and(|g| g != *row))
            .map(|(k, _)| k)
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && stale.is_empty() && differ.is_empty(),
            "{}: topic state != table ({} keys vs {}): missing {missing:?}, still alive {stale:?}, different {differ:?}",
            shape.name,
            got.len(),
            expected.len()
        );
        key_changes += pk_changes_are_debezium_shaped(shape, &records);
    }
    assert!(
        key_changes > 0,
        "the workload ({batches} batches) changed no primary key"
    );
}

/// Checks each primary-key change in `records`: a delete under the old key naming the new key in
/// `__debezium.newkey`, its tombstone after it (a crash between the two replays both), and a create under the new key naming the old
/// one in `__debezium.oldkey`. Returns how many there were.
fn pk_changes_are_debezium_shaped(shape: &Shape, records: &[kafka::Read]) -> usize {
    let header = |r: &kafka::Read, name: &str| -> Option<Json> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| serde_json::from_slice(v.as_deref()?).ok())
    };
    let key_of = |r: &kafka::Read| -> Json {
        let key: Json = serde_json::from_slice(r.key.as_deref().expect("key")).expect("key json");
        key["payload"].clone()
    };
    let creates: HashMap<String, Json> = records
        .iter()
        .filter_map(|r| {
            let old = header(r, "__debezium.oldkey")?;
            let value: Json = serde_json::from_slice(r.value.as_deref()?).ok()?;
            assert_eq!(
                value["payload"]["op"], "c",
                "{}: the oldkey record is not a create",
                shape.name
            );
            Some((key_of(r).to_string(), old))
        })
        .collect();
    let mut n = 0;
    for (i, r) in records.iter().enumerate() {
        // The tombstone carries the delete's headers too, as Debezium's does.
        let (Some(new_key), Some(value)) = (header(r, "__debezium.newkey"), r.value.as_deref())
        else {
            continue;
        };
        let value: Json = serde_json::from_slice(value).expect("json");
        assert_eq!(
            value["payload"]["op"], "d",
            "{}: the newkey record is not a delete",
            shape.name
        );
        let old_key = key_of(r);
        assert!(
            records[i + 1..]
                .iter()
                .any(|t| t.partition == r.partition && t.value.is_none() && key_of(t) == old_key),
            "{}: no tombstone after the delete of {old_key}",
            shape.name
        );
        assert_eq!(
            creates.get(&new_key.to_string()),
            Some(&old_key),
            "{}: no create under {new_key} naming the old key {old_key}",
            shape.name
        );
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tables_narrow_first_end_equal_to_the_topics_after_sigkills() {
    tables_and_topics_end_equal(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_tables_wide_first_end_equal_to_the_topics_after_sigkills() {
    tables_and_topics_end_equal(true).await;
}

/// Acceptance for connectors side by side: two postgres-cdc connectors in one worker on one
/// database, one publication named by both, slots left to their defaults, and a 120k-row
/// transaction over both connectors' tables that Postgres streams and both spool to disk. The
/// second connector starts (over REST) while the first streams.
#[tokio::test(flavor = "multi_thread")]
async fn two_connectors_on_one_database_keep_their_own_tables_and_spools() {
    const ROWS: i64 = 120_000;
    let pg = Postgres::start("logical");
    pg.psql(
        "postgres",
        "ALTER SYSTEM SET logical_decoding_work_mem = '64kB'",
    );
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let db = pg.database("pair");
    pg.psql(
        &db,
        "CREATE TABLE left_t (id int8 PRIMARY KEY, note text);
         CREATE TABLE right_t (id int8 PRIMARY KEY, note text) PARTITION BY RANGE (id);
         CREATE TABLE right_p1 PARTITION OF right_t FOR VALUES FROM (MINVALUE) TO (60000);
         CREATE TABLE right_p2 PARTITION OF right_t FOR VALUES FROM (60000) TO (MAXVALUE);",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let port = sluice_tests::free_port();
    let worker = write_worker(dir.path(), &format!("rest:\n  listen: 127.0.0.1:{port}\n"));
    let prefix = unique("pair").replace('-', "_");
    let publication = format!("pub_{prefix}");
    let config = |side: &str| {
        json!({
            "url": pg.url(&db), "publication": publication, "tables": [format!("public.{side}_t")],
            "topic_prefix": format!("{prefix}_{side}"), "heartbeat_interval": "500ms",
            "max_buffered_changes": 5000,
        })
    };
    let first = format!("{prefix}_left");
    let pipeline = dir.path().join("left.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {first}\nconnector: postgres-cdc\nconfig: {}\nkey_converter: {{type: json}}\n",
            config("left")
        ),
    )
    .expect("write pipeline");
    let sluice = Sluice::run(dir.path(), &worker, &[&pipeline]);
    wait_slot(&pg, &db, &format!("sluice_{first}"));
    // The second connector lists a partitioned table: its partitions' changes arrive under their
    // own names (as without publish_via_partition_root in Debezium).
    let left = format!("{prefix}_left.public.left_t");
    let right: Vec<String> = ["right_p1", "right_p2"]
        .iter()
        .map(|p| format!("{prefix}_right.public.{p}"))
        .collect();
    pg.psql(
        &db,
        "INSERT INTO left_t VALUES (1, 'before the second connector')",
    );
    wait_events(&left, 1).await;

    let second = format!("{prefix}_right");
    let (status, body) = sluice_tests::cluster::call(
        reqwest::Method::PUT,
        &format!("http://127.0.0.1:{port}/connectors/{second}/config"),
        Some(json!({"connector": "postgres-cdc", "config": config("right"), "key_converter": {"type": "json"}})),
    )
    .await;
    assert!(
        status == 201 || status == 200,
        "creating {second}: {status} {body}"
    );
    wait_slot(&pg, &db, &format!("sluice_{second}"));

    // One transaction over both tables (both connectors spool the same transaction id), then a
    // change of the first connector's table alone.
    pg.psql(
        &db,
        &format!(
            "BEGIN; INSERT INTO left_t SELECT g, 'left ' || g FROM generate_series(1000, {end}) g; \
             INSERT INTO right_t SELECT g, 'right ' || g FROM generate_series(1000, {end}) g; COMMIT;",
            end = 1000 + ROWS - 1
        ),
    );
    pg.psql(&db, "INSERT INTO left_t VALUES (999999999, 'after')");
    pg.psql(&db, "INSERT INTO right_t VALUES (999999999, 'after')");
    let expected_left: Vec<i64> = [1]
        .into_iter()
        .chain(1000..1000 + ROWS)
        .chain([999_999_999])
        .collect();
    let expected_right: Vec<i64> = (1000..1000 + ROWS).chain([999_999_999]).collect();
    kafka::wait_while_growing(
        "both connectors' last rows",
        &[&left, &right[1]],
        Duration::from_secs(120),
        || {
            let done = |topic: &str| {
                kafka::read_all(topic).iter().any(|r| {
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default())
                        .contains("999999999")
                })
            };
            (done(&left) && done(&right[1])).then_some(())
        },
    );
    let spools = dir.path().join("data/tasks");
    assert!(sluice.terminate(), "sluice did not stop cleanly");

    let left_tables = [(left.clone(), "left_t")];
    let right_tables = [
        (right[0].clone(), "right_p1"),
        (right[1].clone(), "right_p2"),
    ];
    for (tables, expected) in [
        (&left_tables[..], &expected_left),
        (&right_tables[..], &expected_right),
    ] {
        let mut all = Vec::new();
        for (topic, table) in tables {
            let mut ids: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
            for (partition, _, key, value) in events(topic).await {
                assert_eq!(
                    value["payload"]["source"]["table"], *table,
                    "{topic} holds another table's change"
                );
                ids.entry(partition)
                    .or_default()
                    .push(key["payload"]["id"].as_i64().expect("id"));
            }
            for (partition, in_partition) in &ids {
                assert!(
                    in_partition.windows(2).all(|w| w[0] < w[1]),
                    "{topic} partition {partition}: changes out of commit order or repeated"
                );
            }
            all.extend(ids.into_values().flatten());
        }
        let topic = &tables[0].0;
        all.sort_unstable();
        assert_eq!(
            all.len(),
            expected.len(),
            "{topic}: wrong number of changes"
        );
        assert!(all == *expected, "{topic}: not exactly its table's changes");
    }
    // The spools were under the worker's data directory, one per connector.
    let spool_dirs: Vec<String> = std::fs::read_dir(&spools)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        spool_dirs.iter().any(|d| d.starts_with(&first))
            && spool_dirs.iter().any(|d| d.starts_with(&second)),
        "no spool directory per connector under {}: {spool_dirs:?}",
        spools.display()
    );
}
