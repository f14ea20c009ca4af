//! The CDC reader's input: pgoutput messages as the replication stream delivers them (parsed by
//! pg_walstream, protocol versions 1 to 4), and column texts parsed by type as the reader parses
//! each column of a change. Any input gives a value or an error, never a panic.

use std::sync::atomic::{AtomicU8, Ordering};

/// Built-in type OIDs the reader parses (bool, bytea, text, int8/2/4, float4/8, numeric, date,
/// time, timestamp, timestamptz, uuid, json/jsonb and their arrays).
const OIDS: &[u32] = &[
    16, 17, 25, 20, 21, 23, 700, 701, 1700, 1082, 1083, 1114, 1184, 2950, 114, 3802, 1000, 1001,
    1005, 1007, 1016, 1021, 1022, 1231, 1182, 1183, 1115, 1185, 2951, 199, 3807,
];

fn main() {
    static VERSION: AtomicU8 = AtomicU8::new(0);
    sluice_fuzz::main("pgoutput", |data: &[u8]| {
        let version = u32::from(VERSION.fetch_add(1, Ordering::Relaxed) % 4) + 1;
        let mut parser = pg_walstream::LogicalReplicationParser::with_protocol_version(version);
        // A stream of messages, each prefixed by its length (u16): the parser keeps context
        // (streamed transactions) from one to the next.
        let mut rest = data;
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            let _ = parser.parse_wal_message(&rest[2..2 + len]);
            rest = &rest[2 + len..];
        }
        let _ = parser.parse_wal_message(data);
        let _ = pg_walstream::parse_keepalive_message(data);
        // Column text: the first byte picks the type, the next four its typmod.
        if let [kind, a, b, c, d, text @ ..] = data
            && let Ok(text) = std::str::from_utf8(text)
        {
            let oid = OIDS[usize::from(*kind) % OIDS.len()];
            let typmod = i32::from_be_bytes([*a, *b, *c, *d]);
            let _ = sluice_connector_postgres::parse_column_text(oid, typmod, text);
            let _ = sluice_connector_postgres::parse_column_text(oid, -1, text);
        }
    });
}
