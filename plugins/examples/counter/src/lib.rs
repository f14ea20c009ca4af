//! `counter`: task `i` of `n` emits the numbers `i, i+n, i+2n, ...` (up to `count` over all tasks
//! when set) to `topic`, with key `"<n>"` and value `{"n": <n>, "task": <i>}`. Its source
//! partition is `{"task": i}` and its offset `{"next": <next number>}`, so a restart resumes after
//! the last committed record.

use serde_json::json;
use sluice_plugin_sdk::source::{
    Config, ConfigField, Error, Level, Record, Source, committed_offset, log,
};

struct Counter {
    topic: String,
    count: Option<u64>,
    batch: u32,
    task: u32,
    tasks: u32,
    next: u64,
}

impl Source for Counter {
    fn spec() -> Vec<ConfigField> {
        vec![
            ConfigField::new("topic", "string", "Topic the numbers go to.").required(),
            ConfigField::new(
                "count",
                "int",
                "Numbers over all tasks; unset means without end.",
            ),
            ConfigField::new("batch_size", "int", "Most records one poll returns.").default("100"),
        ]
    }

    fn open(config: &Config, task: u32, tasks: u32) -> Result<Self, Error> {
        let partition = json!({"task": task}).to_string();
        // Resume after the last committed number.
        let next = committed_offset(&partition)
            .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
            .and_then(|o| o["next"].as_u64())
            .unwrap_or(u64::from(task));
        log(
            Level::Info,
            &format!("counter task {task}/{tasks} starts at {next}"),
        );
        Ok(Self {
            topic: config.get("topic").unwrap_or_default().to_owned(),
            count: config.parse("count").map_err(Error::Config)?,
            batch: config
                .parse("batch_size")
                .map_err(Error::Config)?
                .unwrap_or(100),
            task,
            tasks: tasks.max(1),
            next,
        })
    }

    fn poll(&mut self, max: u32) -> Result<Vec<Record>, Error> {
        let mut out = Vec::new();
        while out.len() < self.batch.min(max) as usize {
            if self.count.is_some_and(|c| self.next >= c) {
                break;
            }
            let n = self.next;
            self.next += u64::from(self.tasks);
            let mut record = Record::new(&self.topic, None);
            record.set_key_json(&json!(n.to_string()));
            record.set_value_json(&json!({"n": n, "task": self.task}));
            record.source_partition = Some(json!({"task": self.task}).to_string());
            record.source_offset = Some(json!({"next": self.next}).to_string());
            out.push(record);
        }
        Ok(out)
    }
}

sluice_plugin_sdk::export_source!(Counter);
