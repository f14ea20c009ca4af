//! `datagen`: a source of deterministic synthetic records, for demos, tests and benchmarks.
//!
//! Record `seq` has key `"<seq>"` and a struct value
//! `{seq: int64, name: string, amount: Decimal(2), created: Timestamp}` whose fields are pure
//! functions of `seq`, so a consumer can check every record it reads. With `tasks: n`, task `i`
//! produces the sequence numbers `i, i+n, i+2n, ...`; with `count` set, the whole connector produces
//! exactly `0..count` and then goes idle. Each task's position is its source offset, so a restart
//! continues where the last committed record left off.

mod config;
mod source;

use sluice_connector_api::Registry;

pub use config::DatagenConfig;
pub use source::{DatagenPlugin, record_for};

/// Registers `datagen`.
pub fn register(registry: &mut Registry) {
    registry.add_source(DatagenPlugin);
}
