//! `misbehave-sink`: a sink whose `put` misbehaves on purpose (`mode`: `loop`, `alloc`, `trap`,
//! `sleep`, see the `misbehaviour` crate), for the sandbox tests.

use sluice_plugin_sdk::sink::{Config, ConfigField, Error, Record, Sink};

struct MisbehaveSink {
    mode: String,
    hoard: Vec<Vec<u8>>,
}

impl Sink for MisbehaveSink {
    fn spec() -> Vec<ConfigField> {
        vec![ConfigField::new("mode", "string", "loop, alloc, trap or sleep.").required()]
    }

    fn open(config: &Config, _task: u32) -> Result<Self, Error> {
        Ok(Self {
            mode: config.get("mode").unwrap_or_default().to_owned(),
            hoard: Vec::new(),
        })
    }

    fn put(&mut self, _batch: Vec<Record>) -> Result<(), Error> {
        misbehaviour::misbehave(&self.mode, &mut self.hoard, "put");
        Err(Error::Config(format!("mode: unknown mode {:?}", self.mode)))
    }
}

sluice_plugin_sdk::export_sink!(MisbehaveSink);
