//! Sluice's integration tests, one binary (fast links). Every test runs against a real broker.

mod cluster;
mod datagen_pipeline;
mod errors;
mod file_sink_crash;
mod file_source_crash;
mod http_sink;
mod json_golden;
mod operations;
mod postgres_cdc;
mod postgres_sink;
mod rebalance;
mod reference_docs;
mod s3_archive;
mod security;
mod task_panic;
mod transforms;
mod validate_cli;
mod wasm;
