mod catalog;
mod reader;
mod snapshot;
mod table;
mod task;
mod types;

pub use task::PostgresCdcPlugin;
