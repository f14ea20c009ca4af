use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Result, SinkConnector, SinkPlugin, SinkRecord,
    SinkTask, SinkTaskContext, TopicPartition, Value,
};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncWriteExt, BufWriter};

use crate::config::{FileSinkConfig, SinkFormat, sink_spec};

pub struct FileSinkPlugin;

impl SinkPlugin for FileSinkPlugin {
    fn name(&self) -> &str {
        "file-sink"
    }
    fn doc(&self) -> &str {
        "Appends one line per record to a file; fsyncs before offsets are committed."
    }
    fn spec(&self) -> ConfigSpec {
        sink_spec()
    }
    fn connector(&self) -> Box<dyn SinkConnector> {
        Box::new(FileSinkConnector::default())
    }
    fn task(&self) -> Box<dyn SinkTask> {
        Box::new(FileSinkTask::default())
    }
}

#[derive(Default)]
struct FileSinkConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SinkConnector for FileSinkConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.config = config.clone();
        Ok(())
    }

    /// Several writers appending to one file would interleave partial lines: always one task.
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok(vec![self.config.clone()])
    }
}

#[derive(Default)]
struct FileSinkTask {
    config: Option<FileSinkConfig>,
    writer: Option<BufWriter<File>>,
    line: Vec<u8>,
}

/// The text of a value: strings as they are, everything else as plain JSON.
fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_plain_json().to_string(),
    }
}

fn record_line(format: SinkFormat, record: &SinkRecord) -> String {
    match format {
        SinkFormat::Value => value_text(&record.value),
        SinkFormat::Record => json!({
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": record.key.to_plain_json(),
            "value": record.value.to_plain_json(),
        })
        .to_string(),
    }
}

#[async_trait]
impl SinkTask for FileSinkTask {
    async fn start(&mut self, _ctx: SinkTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config: FileSinkConfig = config.parse()?;
        if let Some(dir) = config.file.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| ConnectorError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.file)
            .await
            .map_err(|e| ConnectorError::io(format!("cannot open {}", config.file.display()), e))?;
        self.writer = Some(BufWriter::with_capacity(256 * 1024, file));
        self.config = Some(config);
        Ok(())
    }

    async fn put(&mut self, records: Vec<SinkRecord>) -> Result<()> {
        let (Some(config), Some(writer)) = (&self.config, self.writer.as_mut()) else {
            return Err(ConnectorError::fatal("file-sink task used before start"));
        };
        for record in &records {
            self.line.clear();
            self.line
                .extend_from_slice(record_line(config.format, record).as_bytes());
            self.line.push(b'\n');
            writer.write_all(&self.line).await.map_err(|e| {
                ConnectorError::io(format!("cannot write {}", config.file.display()), e)
            })?;
        }
        Ok(())
    }

    async fn flush(
        &mut self,
        offsets: &HashMap<TopicPartition, i64>,
    ) -> Result<HashMap<TopicPartition, i64>> {
        let (Some(config), Some(writer)) = (&self.config, self.writer.as_mut()) else {
            return Err(ConnectorError::fatal("file-sink task used before start"));
        };
        let fail = |e| ConnectorError::io(format!("cannot flush {}", config.file.display()), e);
        writer.flush().await.map_err(fail)?;
        writer.get_ref().sync_data().await.map_err(fail)?;
        Ok(offsets.clone())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer
                .flush()
                .await
                .map_err(|e| ConnectorError::io("cannot flush file-sink output", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::Struct;

    #[test]
    fn lines_render_values_and_records() {
        let record = SinkRecord {
            topic: "t".into(),
            partition: 2,
            offset: 7,
            key_schema: None,
            key: Value::String("k".into()),
            value_schema: None,
            value: Value::Struct(Struct::new().with("a", 1i32).with("b", "x")),
            headers: Vec::new(),
            timestamp: Some(5),
        };
        assert_eq!(
            record_line(SinkFormat::Value, &record),
            r#"{"a":1,"b":"x"}"#
        );
        assert_eq!(
            record_line(SinkFormat::Record, &record),
            r#"{"topic":"t","partition":2,"offset":7,"timestamp":5,"key":"k","value":{"a":1,"b":"x"}}"#
        );
        assert_eq!(value_text(&Value::String("plain".into())), "plain");
    }
}
