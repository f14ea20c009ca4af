mod catalog;
mod reader;
mod snapshot;
mod table;
mod task;
mod types;

pub use task::PostgresCdcPlugin;
pub use types::parse_column_text;
