//! `misbehave-source`: a source whose `poll` misbehaves on purpose (`mode`: `loop`, `alloc`,
//! `trap`, `sleep`, see the `misbehaviour` crate), for the sandbox tests.

use sluice_plugin_sdk::source::{Config, ConfigField, Error, Record, Source};

struct MisbehaveSource {
    mode: String,
    hoard: Vec<Vec<u8>>,
}

impl Source for MisbehaveSource {
    fn spec() -> Vec<ConfigField> {
        vec![ConfigField::new("mode", "string", "loop, alloc, trap or sleep.").required()]
    }

    fn open(config: &Config, _task: u32, _tasks: u32) -> Result<Self, Error> {
        Ok(Self {
            mode: config.get("mode").unwrap_or_default().to_owned(),
            hoard: Vec::new(),
        })
    }

    fn poll(&mut self, _max: u32) -> Result<Vec<Record>, Error> {
        misbehaviour::misbehave(&self.mode, &mut self.hoard, "poll");
        Err(Error::Config(format!("mode: unknown mode {:?}", self.mode)))
    }
}

sluice_plugin_sdk::export_source!(MisbehaveSource);
