//! The connector types built into this binary. Every connector crate registers itself here.

use sluice_connector_api::Registry;

/// All built-in connector types.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    sluice_connector_datagen::register(&mut registry);
    sluice_connector_file::register(&mut registry);
    sluice_connector_postgres::register(&mut registry);
    sluice_connector_s3::register(&mut registry);
    registry
}
