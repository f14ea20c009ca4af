use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use async_trait::async_trait;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Result, SinkConnector, SinkPlugin, SinkRecord,
    SinkTask, SinkTaskContext, TopicPartition, Value,
};
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncWriteExt, BufWriter};
use tracing::warn;

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

/// How much of the file's end is read at a time when looking for its last newline.
const TAIL_CHUNK: u64 = 64 * 1024;

/// Truncates `path` after its last newline (to empty when it has none), so that the next line
/// written starts a line of its own; returns how many bytes were cut. A missing file is created
/// empty. The cut is made durable before anything new is written.
fn cut_partial_line(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = Vec::new();
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(TAIL_CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b == b'\n') {
            break start + i as u64 + 1;
        }
        end = start;
    };
    if keep < len {
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(len - keep)
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
        // A crash in the middle of a write leaves a partial last line; the record it belonged
        // to was not committed, so it is delivered again and written whole after the cut.
        let path = config.file.clone();
        let cut = tokio::task::spawn_blocking(move || cut_partial_line(&path))
            .await
            .map_err(|e| ConnectorError::fatal(format!("file-sink start thread failed: {e}")))?
            .map_err(|e| {
                ConnectorError::io(
                    format!(
                        "cannot cut the partial last line of {}",
                        config.file.display()
                    ),
                    e,
                )
            })?;
        if cut > 0 {
            warn!(file = %config.file.display(), bytes = cut, "cut a partial last line left by an interrupted write; its record is written again");
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

    #[test]
    fn a_partial_last_line_is_cut_back_to_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let cases: [(&[u8], &[u8]); 5] = [
            (b"", b""),
            (b"a\nb\n", b"a\nb\n"),
            (b"a\nb\npart", b"a\nb\n"),
            (b"no newline at all", b""),
            (b"a\n\n{\"torn\":", b"a\n\n"),
        ];
        for (before, after) in cases {
            std::fs::write(&path, before).unwrap();
            let cut = cut_partial_line(&path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), after);
            assert_eq!(cut as usize, before.len() - after.len());
        }
        // The last newline far before the end (more than one chunk back).
        let mut long = b"first\n".to_vec();
        long.resize(long.len() + 3 * TAIL_CHUNK as usize + 17, b'x');
        std::fs::write(&path, &long).unwrap();
        assert_eq!(cut_partial_line(&path).unwrap(), 3 * TAIL_CHUNK + 17);
        assert_eq!(std::fs::read(&path).unwrap(), b"first\n");
        // A missing file is created empty.
        let missing = dir.path().join("new.txt");
        assert_eq!(cut_partial_line(&missing).unwrap(), 0);
        assert!(missing.exists());
    }
}
