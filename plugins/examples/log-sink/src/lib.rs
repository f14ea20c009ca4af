//! `log-sink`: writes each record to the worker's log (the host's `log` import), one line per
//! record: `<prefix> {"topic":..,"partition":..,"offset":..,"key":..,"value":..}` with key and
//! value as the JSON they arrived as.

use serde_json::{Value, json};
use sluice_plugin_sdk::sink::{Config, ConfigField, Error, Level, Record, Sink, log};

struct LogSink {
    prefix: String,
}

fn text(bytes: &Option<Vec<u8>>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
    }
}

impl Sink for LogSink {
    fn spec() -> Vec<ConfigField> {
        vec![
            ConfigField::new("prefix", "string", "Text that starts every line.")
                .default("\"record\""),
        ]
    }

    fn open(config: &Config, _task: u32) -> Result<Self, Error> {
        Ok(Self {
            prefix: config.get("prefix").unwrap_or("record").to_owned(),
        })
    }

    fn put(&mut self, batch: Vec<Record>) -> Result<(), Error> {
        for r in batch {
            let line = json!({
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "key": text(&r.key),
                "value": text(&r.value),
            });
            log(Level::Info, &format!("{} {line}", self.prefix));
        }
        Ok(())
    }
}

sluice_plugin_sdk::export_sink!(LogSink);
