mod encode;
mod record;
mod table;
mod task;
mod write;

pub use table::TableNamer;
pub use task::PostgresSinkPlugin;
