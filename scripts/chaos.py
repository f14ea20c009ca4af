"""The workload and the independent checks of scripts/chaos.sh.

Nothing here uses Sluice's code: Postgres is read with psql, the topics with Confluent's Kafka
client (librdkafka), the archive with boto3.

usage:
  chaos.py setup --psql PSQL --source URL --target URL --bootstrap HOST:PORT
  chaos.py write --psql PSQL --source URL --seed N --rate TX_PER_S --stats FILE
  chaos.py progress --bootstrap HOST:PORT
  chaos.py health URL... [--timeout S]
  chaos.py running --rest URL... [--timeout S]
  chaos.py verify --psql PSQL --source URL --target URL --bootstrap HOST:PORT --s3-endpoint URL
                  --s3-credentials FILE --rest URL... --faults FILE --writer-stats FILE
                  [--settle-timeout S] [--output text|json] [--minutes N] [--seed N]
"""
import argparse
import base64
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from decimal import Decimal

TOPIC_PREFIX = "chaos"
PARTITIONS = 3
BUCKET = "chaos"
TOPICS_DIR = "archive"
CDC = "chaos-cdc"
ARCHIVE = "chaos-archive"
REPLICA = "chaos-replica"
TOAST_PLACEHOLDER = "__debezium_unavailable_value"
# The row the run writes last: once its event is in the topic, the writer's transactions are too.
MARKER_ID = 0

# Two tables of different shapes: a bigint key without TOAST under REPLICA IDENTITY DEFAULT, and
# a composite text+int key with large (TOASTed) values under REPLICA IDENTITY FULL.
SCHEMA = """
CREATE TABLE accounts (
  id bigint PRIMARY KEY,
  owner text NOT NULL,
  balance numeric(14,2) NOT NULL,
  active boolean,
  tags text[],
  data bytea,
  updated timestamptz NOT NULL,
  version int NOT NULL DEFAULT 0
);
CREATE TABLE orders (
  region text NOT NULL,
  seq int NOT NULL,
  qty int,
  price double precision,
  doc jsonb,
  ref uuid,
  blob text,
  note text,
  PRIMARY KEY (region, seq)
);
ALTER TABLE orders REPLICA IDENTITY FULL;
"""

# Each table: its key columns, and a query printing every row as JSON in the form the checks
# compare (numeric as text, bytea as hex, timestamptz as microseconds since the epoch).
TABLES = {
    "accounts": {
        "key": ["id"],
        "order": "id",
        "json": "json_build_object('id', id, 'owner', owner, 'balance', balance::text, 'active', active,"
        " 'tags', tags, 'data', encode(data, 'hex'),"
        " 'updated', (extract(epoch FROM updated) * 1000000)::bigint, 'version', version)",
    },
    "orders": {
        "key": ["region", "seq"],
        "order": "region, seq",
        "json": "json_build_object('region', region, 'seq', seq, 'qty', qty, 'price', price, 'doc', doc,"
        " 'ref', ref, 'blob', blob, 'note', note)",
    },
}
REGIONS = ["eu", "us", "ap", "sa"]
OWNERS = ["plain", "O'Brien", 'Zoë "quoted"', "back\\slash", "tab-free, comma", "日本"]


def topic(table):
    return f"{TOPIC_PREFIX}.public.{table}"


def log(msg):
    print(f"[chaos] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# psql

def psql(args, url, sql, timeout=60):
    """Runs SQL with psql; returns (ok, stdout, stderr)."""
    try:
        p = subprocess.run(
            [args.psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url],
            input=sql, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, "", "psql timed out"
    return p.returncode == 0, p.stdout, p.stderr


def psql_ok(args, url, sql):
    ok, out, err = psql(args, url, sql)
    if not ok:
        raise SystemExit(f"psql failed on {url}: {err.strip()}")
    return out


def lit(s):
    return "NULL" if s is None else "'" + s.replace("'", "''") + "'"


def table_rows(args, url, table, as_json):
    """Every row of `table` keyed by its primary key: JSON objects, or the row's text."""
    spec = TABLES[table]
    what = spec["json"] if as_json else "t::text"
    key = " || '/' || ".join(f"{k}::text" for k in spec["key"])
    sql = (f"SET TIME ZONE 'UTC'; SELECT {key} || chr(31) || ({what})::text "
           f"FROM {table} t ORDER BY {spec['order']}")
    ok, out, err = psql(args, url, sql)
    if not ok:
        raise RuntimeError(f"reading {table}: {err.strip()}")
    rows = {}
    for line in out.split("\n"):
        if not line:
            continue
        k, _, v = line.partition("\x1f")
        rows[k] = json.loads(v) if as_json else v
    return rows


# ---------------------------------------------------------------------------------------------
# Workload

class Gen:
    """Random values (SQL literals), from one seeded generator."""

    def __init__(self, rng):
        self.rng = rng

    def owner(self):
        return lit(self.rng.choice(OWNERS) + f" {self.rng.randrange(1000)}")

    def balance(self):
        return f"{self.rng.randrange(-1_000_000, 1_000_000) / 100:.2f}"

    def tags(self):
        r = self.rng.random()
        if r < 0.2:
            return "NULL"
        if r < 0.3:
            return "'{}'::text[]"
        items = [self.rng.choice(["a", "x y", 'q"uote', None, "ü", "c,d"]) for _ in range(self.rng.randrange(1, 4))]
        return "ARRAY[" + ", ".join(lit(i) for i in items) + "]::text[]"

    def data(self):
        if self.rng.random() < 0.25:
            return "NULL"
        return f"'\\x{self.rng.randbytes(self.rng.randrange(0, 24)).hex()}'::bytea"

    def updated(self):
        # Microseconds survive the round trip for timestamptz.
        return f"clock_timestamp() - interval '{self.rng.randrange(0, 10**9)} microseconds'"

    def qty(self):
        return "NULL" if self.rng.random() < 0.1 else str(self.rng.randrange(-5, 10_000))

    def price(self):
        r = self.rng.random()
        if r < 0.1:
            return "NULL"
        if r < 0.5:
            return repr(round(self.rng.uniform(0, 1000), 2))
        return repr(self.rng.uniform(-1e6, 1e6))  # all 17 significant digits

    def doc(self):
        if self.rng.random() < 0.15:
            return "NULL"
        doc = {"n": self.rng.randrange(10**6), "ok": self.rng.random() < 0.5,
               "list": [self.rng.randrange(100), None, "s"], "nested": {"x": round(self.rng.random(), 6)}}
        return lit(json.dumps(doc)) + "::jsonb"

    def ref(self):
        return lit(str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))

    def blob(self):
        # ~8 KB of base64 of random bytes: compresses badly, so Postgres stores it out of line
        # (TOAST) and leaves it out of updates that do not change it.
        return lit(base64.b64encode(self.rng.randbytes(6000)).decode())

    def note(self):
        return lit(self.rng.choice(["new", "changed", "it's", "ünïcode", "x" * 50]))


class Writer:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.gen = Gen(self.rng)
        self.stop = False
        self.accounts = set(range(1, 301))
        self.orders = {(REGIONS[i % 4], i) for i in range(1, 301)}
        self.next_id = 1000
        self.next_seq = 1000
        self.stats = {"transactions": 0, "statements": 0, "rolled_back": 0, "failed": 0,
                      "key_changes": 0, "last_error": None}

    def account(self):
        return self.rng.choice(sorted(self.accounts)) if self.accounts else 1

    def order(self):
        return self.rng.choice(sorted(self.orders)) if self.orders else ("eu", 1)

    def statement(self, effects):
        """One random change; `effects` collects what it does to the writer's idea of the keys."""
        g, r = self.gen, self.rng.random()
        if r < 0.16:
            i = self.next_id
            self.next_id += 1
            effects.append(("add_a", i))
            return (f"INSERT INTO accounts VALUES ({i}, {g.owner()}, {g.balance()}, {self.rng.random() < 0.5},"
                    f" {g.tags()}, {g.data()}, {g.updated()}, 0) ON CONFLICT DO NOTHING")
        if r < 0.40:
            sets = [f"version = version + 1", f"updated = {g.updated()}"]
            for col, fn in (("balance", g.balance), ("tags", g.tags), ("data", g.data), ("owner", g.owner)):
                if self.rng.random() < 0.5:
                    sets.append(f"{col} = {fn()}")
            if self.rng.random() < 0.3:
                sets.append(f"active = {self.rng.choice(['true', 'false', 'NULL'])}")
            return f"UPDATE accounts SET {', '.join(sets)} WHERE id = {self.account()}"
        if r < 0.46:
            i = self.account()
            effects.append(("del_a", i))
            return f"DELETE FROM accounts WHERE id = {i}"
        if r < 0.49:
            old, new = self.account(), self.next_id
            self.next_id += 1
            effects.append(("move_a", old, new))
            return f"UPDATE accounts SET id = {new}, version = version + 1 WHERE id = {old}"
        if r < 0.51:
            # A bulk change: one transaction touching a slice of the table.
            return (f"UPDATE accounts SET version = version + 1, updated = clock_timestamp()"
                    f" WHERE id % 13 = {self.rng.randrange(13)}")
        if r < 0.66:
            key = (self.rng.choice(REGIONS), self.next_seq)
            self.next_seq += 1
            effects.append(("add_o", key))
            blob = g.blob() if self.rng.random() < 0.25 else "NULL"
            return (f"INSERT INTO orders VALUES ({lit(key[0])}, {key[1]}, {g.qty()}, {g.price()}, {g.doc()},"
                    f" {g.ref()}, {blob}, {g.note()}) ON CONFLICT DO NOTHING")
        if r < 0.88:
            region, seq = self.order()
            sets = [f"qty = {g.qty()}"]
            for col, fn in (("price", g.price), ("doc", g.doc), ("note", g.note), ("ref", g.ref)):
                if self.rng.random() < 0.4:
                    sets.append(f"{col} = {fn()}")
            if self.rng.random() < 0.08:
                sets.append(f"blob = {g.blob() if self.rng.random() < 0.7 else 'NULL'}")
            return f"UPDATE orders SET {', '.join(sets)} WHERE region = {lit(region)} AND seq = {seq}"
        if r < 0.95:
            key = self.order()
            effects.append(("del_o", key))
            return f"DELETE FROM orders WHERE region = {lit(key[0])} AND seq = {key[1]}"
        old = self.order()
        new = (self.rng.choice(REGIONS), self.next_seq)
        self.next_seq += 1
        effects.append(("move_o", old, new))
        return (f"UPDATE orders SET region = {lit(new[0])}, seq = {new[1]}, qty = {g.qty()}"
                f" WHERE region = {lit(old[0])} AND seq = {old[1]}")

    def transaction(self):
        effects, parts = [], ["BEGIN;"]
        n = self.rng.randrange(1, 7)
        for _ in range(n):
            if self.rng.random() < 0.03:
                # A rolled-back subtransaction: its changes must appear nowhere.
                parts.append(f"SAVEPOINT s; {self.statement([])}; ROLLBACK TO SAVEPOINT s;")
            else:
                parts.append(self.statement(effects) + ";")
        rollback = self.rng.random() < 0.03
        parts.append("ROLLBACK;" if rollback else "COMMIT;")
        return "\n".join(parts), effects, rollback, n

    def apply(self, effects):
        for e in effects:
            kind = e[0]
            if kind == "add_a":
                self.accounts.add(e[1])
            elif kind == "del_a":
                self.accounts.discard(e[1])
            elif kind == "move_a":
                if e[1] in self.accounts:
                    self.accounts.discard(e[1])
                    self.accounts.add(e[2])
                    self.stats["key_changes"] += 1
            elif kind == "add_o":
                self.orders.add(e[1])
            elif kind == "del_o":
                self.orders.discard(e[1])
            elif kind == "move_o":
                if e[1] in self.orders:
                    self.orders.discard(e[1])
                    self.orders.add(e[2])
                    self.stats["key_changes"] += 1

    def save_stats(self):
        tmp = self.args.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.stats, f)
        os.replace(tmp, self.args.stats)

    def run(self):
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stop", True))
        last_save = 0.0
        while not self.stop:
            sql, effects, rollback, n = self.transaction()
            ok, _, err = psql(self.args, self.args.source, sql, timeout=30)
            if ok:
                self.stats["statements"] += n
                if rollback:
                    self.stats["rolled_back"] += 1
                else:
                    self.stats["transactions"] += 1
                    self.apply(effects)
            else:
                # Postgres is down or restarting. The outcome of a COMMIT cut off mid-way is
                # unknown; the checks compare with the table's final state, so it does not matter.
                self.stats["failed"] += 1
                self.stats["last_error"] = err.strip()[:200]
                time.sleep(0.5)
            if time.monotonic() - last_save > 1:
                self.save_stats()
                last_save = time.monotonic()
            time.sleep(self.rng.expovariate(self.args.rate))
        # The marker goes last, retried until Postgres takes it.
        for _ in range(120):
            ok, _, err = psql(self.args, self.args.source,
                              f"INSERT INTO accounts VALUES ({MARKER_ID}, 'chaos-end', 0, NULL, NULL, NULL,"
                              f" clock_timestamp(), 0) ON CONFLICT (id) DO UPDATE SET version = accounts.version + 1")
            if ok:
                break
            time.sleep(0.5)
        else:
            self.stats["last_error"] = f"the end marker was not written: {err.strip()[:200]}"
        self.stats["marker"] = ok
        self.save_stats()


def cmd_write(args):
    Writer(args).run()


def cmd_setup(args):
    from confluent_kafka.admin import AdminClient, NewTopic
    for url in (args.source, args.target):
        psql_ok(args, url, SCHEMA)
    # Rows the connector's snapshot reads, before any change streams.
    psql_ok(args, args.source, f"""
INSERT INTO accounts SELECT g, 'owner ' || g, g * 1.5, g % 2 = 0, ARRAY['t' || g], NULL,
  timestamptz '2026-01-01 00:00:00+00' + g * interval '1.000001 second', 0 FROM generate_series(1, 300) g;
INSERT INTO orders SELECT (ARRAY{REGIONS!r})[g % 4 + 1], g, g, g / 3.0, jsonb_build_object('g', g),
  md5(g::text)::uuid, CASE WHEN g % 10 = 0 THEN repeat(md5(g::text), 300) END, 'snap' FROM generate_series(1, 300) g;
""")
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics([NewTopic(topic(t), PARTITIONS, 1) for t in TABLES])
    for name, f in futures.items():
        f.result(30)
        log(f"topic {name} created with {PARTITIONS} partitions")


# ---------------------------------------------------------------------------------------------
# Kafka

def kafka_conf(args):
    return {"bootstrap.servers": args.bootstrap, "socket.timeout.ms": 5000,
            "enable.auto.commit": False, "log_level": 0, "logger": lambda *a: None}


def end_offsets(consumer, timeout=5):
    from confluent_kafka import TopicPartition
    ends = {}
    for t in TABLES:
        for p in range(PARTITIONS):
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic(t), p), timeout=timeout)
            ends[(topic(t), p)] = hi
    return ends


def committed(consumer_factory, group, timeout=5):
    from confluent_kafka import TopicPartition
    c = consumer_factory(group)
    try:
        tps = [TopicPartition(topic(t), p) for t in TABLES for p in range(PARTITIONS)]
        out = {}
        for tp in c.committed(tps, timeout=timeout):
            out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else 0
        return out
    finally:
        c.close()


def cmd_progress(args):
    """One line: records in the CDC topics and how far each sink's group has committed."""
    from confluent_kafka import Consumer
    make = lambda g: Consumer({**kafka_conf(args), "group.id": g})
    try:
        c = make("chaos-progress")
        ends = end_offsets(c, timeout=3)
        c.close()
        total = sum(ends.values())
        parts = [f"topics {total} records"]
        for name in (ARCHIVE, REPLICA):
            done = committed(make, f"connect-{name}", timeout=3)
            lag = sum(max(0, ends[k] - done.get(k, 0)) for k in ends)
            parts.append(f"{name.split('-')[1]} lag {lag}")
        print(", ".join(parts))
    except Exception as e:  # the broker may be down right now
        print(f"broker unreachable ({type(e).__name__})")


class TopicReader:
    """Reads the CDC topics from the start, a little more on every call."""

    def __init__(self, args):
        from confluent_kafka import Consumer, TopicPartition
        self.consumer = Consumer({**kafka_conf(args), "group.id": "chaos-verify", "enable.partition.eof": False})
        self.records = {(topic(t), p): [] for t in TABLES for p in range(PARTITIONS)}
        self.consumer.assign([TopicPartition(topic(t), p, 0) for t in TABLES for p in range(PARTITIONS)])

    def position(self, tp):
        recs = self.records[tp]
        return recs[-1][0] + 1 if recs else 0

    def read_to(self, ends, limit):
        """Consumes until every partition reached `ends` or `limit` seconds passed."""
        deadline = time.monotonic() + limit
        while any(self.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
            for m in self.consumer.consume(num_messages=2000, timeout=0.5):
                if m.error():
                    continue
                tp = (m.topic(), m.partition())
                if m.offset() >= self.position(tp):
                    self.records[tp].append((m.offset(), m.key(), m.value()))
        return all(self.position(tp) >= end for tp, end in ends.items())

    def close(self):
        self.consumer.close()


# ---------------------------------------------------------------------------------------------
# The checks

def b64_decimal(text, scale):
    raw = base64.b64decode(text)
    return str(Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale))


def micros(zoned):
    dt = datetime.datetime.fromisoformat(zoned)
    return (dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


def canonical(table, after, schema):
    """A CDC `after` image in the form TABLES[table]['json'] prints rows."""
    scales = {}
    for f in schema:
        if f.get("name") == "org.apache.kafka.connect.data.Decimal":
            scales[f["field"]] = int(f["parameters"]["scale"])
    row = {}
    for col, v in after.items():
        if v is None or v == TOAST_PLACEHOLDER:
            row[col] = v
        elif col in scales:
            row[col] = b64_decimal(v, scales[col])
        elif col == "data":
            row[col] = base64.b64decode(v).hex()
        elif col == "updated":
            row[col] = micros(v)
        elif col == "doc":
            row[col] = json.loads(v)
        else:
            row[col] = v
    return row


def key_text(table, key_payload):
    return "/".join(str(key_payload[k]) for k in TABLES[table]["key"])


def check_topics(args, reader, source_rows):
    """For every key: the last event in its topic is the source row's final state."""
    failures, stats = [], {"events": 0, "tombstones": 0, "keys": 0, "rows": 0}
    for t in TABLES:
        state = {}  # key -> (row or None, partition, offset)
        for p in range(PARTITIONS):
            for offset, k, v in reader.records[(topic(t), p)]:
                stats["events"] += 1
                key = key_text(t, json.loads(k)["payload"])
                if v is None:
                    stats["tombstones"] += 1
                    state[key] = (None, p, offset)
                    continue
                value = json.loads(v)
                payload = value["payload"]
                if payload["op"] == "d":
                    state[key] = (None, p, offset)
                    continue
                fields = next(f["fields"] for f in value["schema"]["fields"] if f["field"] == "after")
                row = canonical(t, payload["after"], fields)
                before = state.get(key, (None,))[0]
                for col, val in row.items():
                    if val == TOAST_PLACEHOLDER:
                        # An unchanged TOAST value: the earlier event of the key holds it.
                        row[col] = before.get(col, TOAST_PLACEHOLDER) if before else TOAST_PLACEHOLDER
                state[key] = (row, p, offset)
        rows = source_rows[t]
        stats["keys"] += len(state)
        stats["rows"] += len(rows)
        for key, want in rows.items():
            got = state.get(key)
            if got is None:
                failures.append(f"{topic(t)}: key {key} never appeared (source row {short(want)})")
            elif got[0] is None:
                failures.append(f"{topic(t)}: key {key} ends deleted at partition {got[1]} offset {got[2]}, "
                                f"but the source row exists: {short(want)}")
            elif got[0] != want:
                diff = {c: (got[0].get(c), want.get(c)) for c in want if got[0].get(c) != want.get(c)}
                failures.append(f"{topic(t)}: key {key} last event (partition {got[1]} offset {got[2]}) differs "
                                f"from the source row in {short(diff)} (topic, source)")
        for key, (row, p, offset) in state.items():
            if row is not None and key not in rows:
                failures.append(f"{topic(t)}: key {key} was deleted in the source, but its last event "
                                f"(partition {p} offset {offset}) is a row")
    return failures, stats


def check_archive(args, reader, ends):
    """Every partition's offsets [0, end) archived exactly once, with the topic's key and value."""
    import boto3
    from botocore.config import Config
    access, secret = open(args.s3_credentials).read().split()[:2]
    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint, aws_access_key_id=access,
                      aws_secret_access_key=secret, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10}))
    failures, stats = [], {"objects": 0, "records": 0}
    archived = {tp: {} for tp in ends}  # tp -> offset -> [object keys]
    contents = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{TOPICS_DIR}/"):
        for obj in page.get("Contents", []):
            # s3s-fs does not URL-encode listed keys although boto3 asks it to, so boto3 turns
            # the `+` of `<topic>+<partition>+<offset>` into a space: put it back.
            name = obj["Key"].replace(" ", "+")
            stats["objects"] += 1
            body = s3.get_object(Bucket=BUCKET, Key=name)["Body"].read().decode()
            first = None
            for line in body.splitlines():
                rec = json.loads(line)
                tp = (rec["topic"], rec["partition"])
                if tp not in archived:
                    failures.append(f"{name}: record of an unexpected partition {tp}")
                    continue
                stats["records"] += 1
                first = rec["offset"] if first is None else first
                archived[tp].setdefault(rec["offset"], []).append(name)
                contents[(tp, rec["offset"])] = (rec.get("key_base64"), rec.get("value_base64"))
            if first is not None and not name.endswith(f"+{first:020d}.json"):
                failures.append(f"{name}: first record has offset {first}, not the one in its name")
    topic_records = {tp: {o: (k, v) for o, k, v in reader.records[tp]} for tp in ends}
    for tp, end in sorted(ends.items()):
        got = archived[tp]
        dupes = sorted(o for o, names in got.items() if len(names) > 1)
        missing = [o for o in range(end) if o not in got]
        beyond = sorted(o for o in got if o >= end)
        label = f"{tp[0]}/{tp[1]}"
        if dupes:
            failures.append(f"{label}: {len(dupes)} offsets archived more than once, first {dupes[0]} in "
                            f"{got[dupes[0]]}")
        if missing:
            failures.append(f"{label}: {len(missing)} of {end} offsets missing from the archive: {ranges(missing)}")
        if beyond:
            failures.append(f"{label}: offsets {ranges(beyond)} archived beyond the end {end}")
        wrong = []
        for o in range(end):
            if o in got and o in topic_records[tp]:
                k, v = topic_records[tp][o]
                ak, av = contents[(tp, o)]
                if (b64(k), b64(v)) != (ak, av):
                    wrong.append(o)
        if wrong:
            failures.append(f"{label}: {len(wrong)} archived records differ from the topic's, first offset {wrong[0]}")
    return failures, stats


def check_replica(args, source_raw, target_raw, source_json, target_json):
    failures, stats = [], {"rows": 0}
    for t in TABLES:
        src, dst = source_raw[t], target_raw[t]
        stats["rows"] += len(dst)
        for key in sorted(set(src) | set(dst)):
            if key not in dst:
                failures.append(f"{t}: row {key} missing in the target (source {short(src[key])})")
            elif key not in src:
                failures.append(f"{t}: row {key} in the target was deleted in the source (target {short(dst[key])})")
            elif src[key] != dst[key]:
                a, b = source_json[t].get(key, {}), target_json[t].get(key, {})
                cols = {c: (a.get(c), b.get(c)) for c in a if a.get(c) != b.get(c)}
                what = f"in {short(cols)} (source, target)" if cols else \
                    f": source {short(src[key])} target {short(dst[key])}"
                failures.append(f"{t}: row {key} differs {what}")
    return failures, stats


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def short(v, n=300):
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= n else s[:n] + f"...({len(s)} chars)"


def ranges(offsets):
    out, start, prev = [], None, None
    for o in offsets:
        if start is None:
            start = prev = o
        elif o == prev + 1:
            prev = o
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = o
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(out[:10]) + (f" and {len(out) - 10} more ranges" if len(out) > 10 else "")


def rest_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def connector_states(args):
    """Each connector's state and task states, from the first worker that answers."""
    for base in args.rest:
        try:
            out = {}
            for name in (CDC, ARCHIVE, REPLICA):
                s = rest_get(f"{base}/connectors/{name}/status")
                out[name] = {"state": s["connector"]["state"],
                             "tasks": [{"id": t["id"], "state": t["state"], "worker": t.get("worker_id"),
                                        "trace": (t.get("trace") or "")[:300]} for t in s["tasks"]]}
            return out
        except Exception:
            continue
    return None


def cmd_health(args):
    deadline = time.monotonic() + args.timeout
    for url in args.urls:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=3) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not report healthy within {args.timeout:.0f} s")
            time.sleep(0.5)


def diagnostics(args, path):
    """What a stuck run looks like from outside: workers' metrics and statuses, the slot."""
    keep = ("sluice_source_", "sluice_sink_records_lag", "sluice_sink_partitions", "sluice_task_restarts",
            "sluice_offset_commits_total", "sluice_worker_tasks", "sluice_task_status", "sluice_worker_is_leader")
    out = []
    for base in args.rest:
        out.append(f"== {base}/metrics")
        try:
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:
                out += [l for l in r.read().decode().splitlines() if l.startswith(keep) and not l.endswith(" 0")]
        except Exception as e:
            out.append(f"unreachable: {e}")
    out.append("== connector states")
    out.append(json.dumps(connector_states(args), indent=2))
    out.append("== replication slot and walsender")
    for sql in ("SELECT slot_name, active, active_pid, confirmed_flush_lsn, pg_current_wal_lsn() FROM pg_replication_slots",
                "SELECT pid, state, sent_lsn, write_lsn, flush_lsn, reply_time FROM pg_stat_replication"):
        ok, res, err = psql(args, args.source, sql)
        out.append(res.strip() if ok else f"failed: {err.strip()}")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    log(f"diagnostics of the stuck pipelines in {path}")


def cmd_running(args):
    """Waits (bounded) until every connector and task runs."""
    deadline = time.monotonic() + args.timeout
    while True:
        states = connector_states(args)
        if states and all(st["state"] == "RUNNING" and st["tasks"] and
                          all(t["state"] == "RUNNING" for t in st["tasks"]) for st in states.values()):
            return 0
        if time.monotonic() > deadline:
            raise SystemExit(f"connectors not all RUNNING within {args.timeout:.0f} s: {json.dumps(states)}")
        time.sleep(1)


def cmd_verify(args):
    from confluent_kafka import Consumer
    make = lambda g: Consumer({**kafka_conf(args), "group.id": g})
    admin = make("chaos-verify-offsets")
    reader = TopicReader(args)
    started = time.monotonic()
    settled, reason, last_print, prev_ends, stable_since = False, "", 0.0, None, None
    last_snapshot, moved_at = None, time.monotonic()
    # Wait (bounded) until: the writer's last row is in the topic, both sinks committed the end of
    # every partition, the replica equals the source, and the topics stopped growing for 5 s.
    while time.monotonic() - started < args.settle_timeout:
        try:
            ends = end_offsets(admin)
            reader.read_to(ends, 10)
            marker = any(v is not None and json.loads(k)["payload"].get("id") == MARKER_ID
                         for p in range(PARTITIONS) for _, k, v in reader.records[(topic("accounts"), p)])
            lags = {}
            for name in (ARCHIVE, REPLICA):
                done = committed(make, f"connect-{name}")
                lags[name] = {f"{tp[0]}/{tp[1]}": ends[tp] - done.get(tp, 0) for tp in ends if ends[tp] > done.get(tp, 0)}
            src = {t: table_rows(args, args.source, t, False) for t in TABLES}
            dst = {t: table_rows(args, args.target, t, False) for t in TABLES}
            differ = sum(1 for t in TABLES for k in set(src[t]) | set(dst[t]) if src[t].get(k) != dst[t].get(k))
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
            time.sleep(2)
            continue
        if ends != prev_ends:
            prev_ends, stable_since = ends, time.monotonic()
        quiet = time.monotonic() - stable_since
        done = marker and not any(lags.values()) and differ == 0
        waiting = [] if marker else ["the end marker is not in the topic yet"]
        waiting += [f"{n} lag {sum(l.values())} ({', '.join(list(l)[:3])})" for n, l in lags.items() if l]
        waiting += [f"{differ} replica rows differ"] if differ else []
        reason = "; ".join(waiting)
        # Nothing moves at all (no new records, no commits, no replica change): a stuck pipeline.
        snapshot = (tuple(sorted(ends.items())), json.dumps(lags, sort_keys=True), differ, marker)
        if snapshot != last_snapshot:
            last_snapshot, moved_at = snapshot, time.monotonic()
        elif not done and time.monotonic() - moved_at > args.stall_timeout:
            reason = f"nothing moved for {args.stall_timeout:.0f} s: {reason}"
            break
        if done and quiet >= 5:
            settled = True
            break
        if time.monotonic() - last_print >= 5:
            log(f"settling {time.monotonic() - started:.0f}s: " + (reason or f"caught up, waiting for quiet ({quiet:.0f}s)"))
            last_print = time.monotonic()
        time.sleep(1)
    settle_seconds = round(time.monotonic() - started, 1)
    if settled:
        log(f"settled after {settle_seconds} s")
    else:
        reason = reason if reason.startswith("nothing moved") else f"not within {args.settle_timeout:.0f} s: {reason}"
        log(f"did not settle: {reason}")
        diagnostics(args, os.path.join(os.path.dirname(args.faults), "diagnostics.txt"))

    # The final reads.
    ends = end_offsets(admin, timeout=10)
    complete = reader.read_to(ends, 60)
    source_json = {t: table_rows(args, args.source, t, True) for t in TABLES}
    source_raw = {t: table_rows(args, args.source, t, False) for t in TABLES}
    target_raw = {t: table_rows(args, args.target, t, False) for t in TABLES}
    target_json = {t: table_rows(args, args.target, t, True) for t in TABLES}
    checks = {}
    f, s = check_topics(args, reader, source_json)
    if not complete:
        f.insert(0, "could not read the topics to their end offsets within 60 s")
    checks["topics"] = {"ok": not f, "failures": f, **s}
    f, s = check_archive(args, reader, ends)
    checks["archive"] = {"ok": not f, "failures": f, **s}
    f, s = check_replica(args, source_raw, target_raw, source_json, target_json)
    checks["replica"] = {"ok": not f, "failures": f, **s}
    states = connector_states(args)
    f = []
    if states is None:
        f.append("no worker answered the status requests")
    else:
        for name, st in states.items():
            if st["state"] != "RUNNING":
                f.append(f"{name}: connector {st['state']}")
            for t in st["tasks"]:
                if t["state"] != "RUNNING":
                    f.append(f"{name} task {t['id']}: {t['state']} on {t['worker']}: {t['trace']}")
    checks["tasks"] = {"ok": not f, "failures": f, "connectors": states}
    checks["settled"] = {"ok": settled, "failures": [] if settled else [f"did not settle, {reason}"],
                         "seconds": settle_seconds}
    reader.close()
    admin.close()

    faults = [json.loads(l) for l in open(args.faults)] if os.path.exists(args.faults) else []
    writer = json.load(open(args.writer_stats)) if os.path.exists(args.writer_stats) else {}
    ok = all(c["ok"] for c in checks.values())
    report = {"ok": ok, "minutes": args.minutes, "seed": args.seed, "writer": writer, "faults": faults,
              "end_offsets": {f"{t}/{p}": e for (t, p), e in sorted(ends.items())}, "checks": checks}
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        print_summary(report)
    return 0 if ok else 1


def print_summary(r):
    w = r["writer"]
    kinds = {}
    for f in r["faults"]:
        if f["action"] in ("kill", "stop"):
            kinds[f["target"].split("-")[0]] = kinds.get(f["target"].split("-")[0], 0) + 1
    print(f"chaos run: {r['minutes']} min, seed {r['seed']}")
    print(f"  writer: {w.get('transactions', 0)} transactions ({w.get('statements', 0)} statements, "
          f"{w.get('key_changes', 0)} key changes), {w.get('rolled_back', 0)} rolled back, "
          f"{w.get('failed', 0)} failed while Postgres was down")
    print("  faults: " + ", ".join(f"{n}x {k}" for k, n in sorted(kinds.items())))
    c = r["checks"]
    print(f"  settled:  {'ok' if c['settled']['ok'] else 'FAILED'} after {c['settled']['seconds']} s")
    t, a, p = c["topics"], c["archive"], c["replica"]
    if t["ok"]:
        print(f"  topics:   ok: {t['events']} events, {t['keys']} keys; each of {t['rows']} source rows is its key's last event")
    else:
        print(f"  topics:   FAILED: {t['events']} events, {t['keys']} keys, {t['rows']} source rows")
    parts = f"{len(r['end_offsets'])} partitions ({sum(r['end_offsets'].values())} records)"
    if a["ok"]:
        print(f"  archive:  ok: {a['records']} records in {a['objects']} objects; every offset of {parts} archived exactly once")
    else:
        print(f"  archive:  FAILED: {a['records']} records in {a['objects']} objects for {parts}")
    print(f"  replica:  {'ok' if p['ok'] else 'FAILED'}: {p['rows']} target rows"
          + (", equal to the source" if p["ok"] else ""))
    print(f"  tasks:    {'ok' if c['tasks']['ok'] else 'FAILED'}")
    for name, check in c.items():
        for f in check["failures"][:20]:
            print(f"  FAILED {name}: {f}")
        if len(check["failures"]) > 20:
            print(f"  ... and {len(check['failures']) - 20} more {name} failures")
    failed = sum(1 for check in c.values() if not check["ok"])
    print(f"chaos: {len(c) - failed} passed, {failed} failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--psql", required=True)
    s.add_argument("--source", required=True)
    s.add_argument("--target", required=True)
    s.add_argument("--bootstrap", required=True)
    s = sub.add_parser("write")
    s.add_argument("--psql", required=True)
    s.add_argument("--source", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--rate", type=float, default=5.0)
    s.add_argument("--stats", required=True)
    s = sub.add_parser("progress")
    s.add_argument("--bootstrap", required=True)
    s = sub.add_parser("health")
    s.add_argument("urls", nargs="+")
    s.add_argument("--timeout", type=float, default=120)
    s = sub.add_parser("running")
    s.add_argument("--rest", nargs="+", required=True)
    s.add_argument("--timeout", type=float, default=120)
    s = sub.add_parser("verify")
    for a in ("--psql", "--source", "--target", "--bootstrap", "--s3-endpoint", "--s3-credentials",
              "--faults", "--writer-stats"):
        s.add_argument(a, required=True)
    s.add_argument("--rest", nargs="+", required=True)
    s.add_argument("--settle-timeout", type=float, default=300)
    s.add_argument("--stall-timeout", type=float, default=90)
    s.add_argument("--output", choices=["text", "json"], default="text")
    s.add_argument("--minutes", type=float, default=0)
    s.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fn = {"setup": cmd_setup, "write": cmd_write, "progress": cmd_progress, "health": cmd_health,
          "running": cmd_running, "verify": cmd_verify}[args.cmd]
    sys.exit(fn(args) or 0)


if __name__ == "__main__":
    main()
