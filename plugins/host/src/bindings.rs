//! The one place that generates host bindings for `plugins/wit`. The `types` and `host`
//! interfaces are generated once (with the `source` world) and shared by the other worlds, so
//! one linker serves every plugin. Calls are async (see `session.rs`): a deadline can then
//! cancel a call that waits in a host call, which epoch interruption cannot.

#![allow(missing_docs, clippy::all)]

pub(crate) mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "source",
        imports: { default: async },
        exports: { default: async },
    });
}

pub(crate) mod sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink",
        imports: { default: async },
        exports: { default: async },
        with: {
            "sluice:connector/types": super::source::sluice::connector::types,
            "sluice:connector/host": super::source::sluice::connector::host,
        },
    });
}

pub(crate) mod transform {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform",
        imports: { default: async },
        exports: { default: async },
        with: {
            "sluice:connector/types": super::source::sluice::connector::types,
            "sluice:connector/host": super::source::sluice::connector::host,
        },
    });
}

pub(crate) use source::sluice::connector::{host, types};
