//! The one place that generates host bindings for `plugins/wit`. The `types` and `host`
//! interfaces are generated once (with the `source` world) and shared by the other worlds, so
//! one linker serves every plugin.

#![allow(missing_docs, clippy::all)]

pub(crate) mod source {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "source",
    });
}

pub(crate) mod sink {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sink",
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
        with: {
            "sluice:connector/types": super::source::sluice::connector::types,
            "sluice:connector/host": super::source::sluice::connector::host,
        },
    });
}

pub(crate) use source::sluice::connector::{host, types};
