//! `blocking-spec`: a source whose `spec` waits an hour in a host call (a WASI sleep), so loading
//! it must give up at the call timeout. `scripts/build-plugins.sh` keeps it out of the plugins
//! directory (under `blocking/`), where it would slow every worker start.

use sluice_plugin_sdk::source::{Config, ConfigField, Error, Record, Source};

struct BlockingSpec;

impl Source for BlockingSpec {
    fn spec() -> Vec<ConfigField> {
        std::thread::sleep(misbehaviour::SLEEP);
        Vec::new()
    }

    fn open(_config: &Config, _task: u32, _tasks: u32) -> Result<Self, Error> {
        Ok(Self)
    }

    fn poll(&mut self, _max: u32) -> Result<Vec<Record>, Error> {
        Ok(Vec::new())
    }
}

sluice_plugin_sdk::export_source!(BlockingSpec);
