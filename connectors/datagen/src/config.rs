use serde::Deserialize;
use sluice_connector_api::{ConfigSpec, FieldKind, Validator};

pub(crate) const DEFAULT_BATCH_SIZE: i64 = 500;

/// Configuration of the `datagen` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct DatagenConfig {
    /// Topic the records go to.
    pub topic: String,
    /// Total records over all tasks; unset means without end.
    pub count: Option<u64>,
    /// Records per second over all tasks; unset means as fast as possible.
    pub rate: Option<f64>,
    /// Most records one poll returns.
    pub batch_size: usize,
    /// Index of this task (set by the connector).
    #[serde(default)]
    pub task_index: u64,
    /// Number of tasks (set by the connector).
    #[serde(default = "one")]
    pub task_count: u64,
}

fn one() -> u64 {
    1
}

pub(crate) fn spec() -> ConfigSpec {
    ConfigSpec::new()
        .required("topic", FieldKind::String, "Topic the records go to.")
        .check(Validator::NonEmpty)
        .maybe(
            "count",
            FieldKind::Int,
            "Total records over all tasks; unset means without end.",
        )
        .check(Validator::min(0))
        .maybe(
            "rate",
            FieldKind::Float,
            "Records per second over all tasks; unset means as fast as possible.",
        )
        .check(Validator::Range {
            min: Some(0.001),
            max: None,
        })
        .optional(
            "batch_size",
            FieldKind::Int,
            DEFAULT_BATCH_SIZE,
            "Most records one poll returns.",
        )
        .check(Validator::range(1, 100_000))
}
