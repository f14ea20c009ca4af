use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Result, Schema, SchemaRef, SourceConnector,
    SourcePartition, SourcePlugin, SourceRecord, SourceTask, SourceTaskContext, Value,
};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tracing::{info, warn};

use crate::config::{FileSourceConfig, source_spec};

static LINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::string()));

pub struct FileSourcePlugin;

impl SourcePlugin for FileSourcePlugin {
    fn name(&self) -> &str {
        "file-source"
    }
    fn doc(&self) -> &str {
        "Each line of a file as a string record; follows appended lines; resumes at the committed byte position."
    }
    fn spec(&self) -> ConfigSpec {
        source_spec()
    }
    fn connector(&self) -> Box<dyn SourceConnector> {
        Box::new(FileSourceConnector::default())
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(FileSourceTask::default())
    }
}

#[derive(Default)]
struct FileSourceConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SourceConnector for FileSourceConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.config = config.clone();
        Ok(())
    }

    /// One file is one ordered stream: always one task.
    fn task_configs(&self, _max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        Ok(vec![self.config.clone()])
    }
}

#[derive(Default)]
struct FileSourceTask {
    config: Option<FileSourceConfig>,
    partition: SourcePartition,
    reader: Option<BufReader<File>>,
    /// Byte position after the last complete line read.
    position: u64,
    /// Inode of the file being read, and the one the stored offset was taken on.
    inode: Option<u64>,
    stored_inode: Option<u64>,
    warned_missing: bool,
}

impl FileSourceTask {
    /// Opens the file at the resume position; `None` while the file does not exist yet.
    async fn open(&mut self, config: &FileSourceConfig) -> Result<Option<BufReader<File>>> {
        let path = &config.file;
        let file = match File::open(path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !self.warned_missing {
                    warn!(file = %path.display(), "file does not exist yet; waiting for it");
                    self.warned_missing = true;
                }
                return Ok(None);
            }
            Err(e) => {
                return Err(ConnectorError::io(
                    format!("cannot open {}", path.display()),
                    e,
                ));
            }
        };
        let metadata = file
            .metadata()
            .await
            .map_err(|e| ConnectorError::io(format!("cannot stat {}", path.display()), e))?;
        let (len, inode) = (metadata.len(), metadata.ino());
        if self
            .stored_inode
            .take()
            .is_some_and(|stored| stored != inode)
        {
            warn!(file = %path.display(), "the file was replaced since the offset was stored (rotated?); reading it from the start");
            self.position = 0;
        }
        if self.position > len {
            warn!(file = %path.display(), position = self.position, len, "file is shorter than the committed position (truncated?); reading it from the start");
            self.position = 0;
        }
        self.inode = Some(inode);
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader
            .seek(SeekFrom::Start(self.position))
            .await
            .map_err(|e| ConnectorError::io(format!("cannot seek in {}", path.display()), e))?;
        info!(file = %path.display(), position = self.position, "reading file");
        Ok(Some(reader))
    }
}

#[async_trait]
impl SourceTask for FileSourceTask {
    async fn start(&mut self, ctx: SourceTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config: FileSourceConfig = config.parse()?;
        let filename = config.file.to_string_lossy().into_owned();
        self.partition = json!({"filename": filename})
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(offset) = ctx.offsets.offset(&self.partition).await? {
            self.position = offset
                .get("position")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| {
                    ConnectorError::data(format!(
                        "stored file-source offset {offset:?} has no integer `position`"
                    ))
                })?;
            self.stored_inode = offset.get("inode").and_then(serde_json::Value::as_u64);
        }
        self.config = Some(config);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let Some(config) = self.config.clone() else {
            return Err(ConnectorError::fatal(
                "file-source task polled before start",
            ));
        };
        let idle = Duration::from_millis(config.poll_interval);
        if self.reader.is_none() {
            self.reader = self.open(&config).await?;
        }
        let Some(reader) = self.reader.as_mut() else {
            tokio::time::sleep(idle).await;
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let mut line = Vec::with_capacity(256);
        while records.len() < config.batch_size {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).await.map_err(|e| {
                ConnectorError::io(format!("cannot read {}", config.file.display()), e)
            })?;
            if read == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                // A line still being written: read it again once its newline is there.
                reader
                    .seek(SeekFrom::Start(self.position))
                    .await
                    .map_err(|e| {
                        ConnectorError::io(format!("cannot seek in {}", config.file.display()), e)
                    })?;
                break;
            }
            let end = self.position + read as u64;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = String::from_utf8(std::mem::take(&mut line)).map_err(|e| {
                ConnectorError::data(format!(
                    "{}: line at byte {} is not valid UTF-8: {e}",
                    config.file.display(),
                    self.position
                ))
            })?;
            let offset = json!({"position": end, "inode": self.inode})
                .as_object()
                .cloned()
                .unwrap_or_default();
            records.push(SourceRecord::new(
                config.topic.clone(),
                Some(LINE_SCHEMA.clone()),
                Value::String(text),
                self.partition.clone(),
                offset,
            ));
            self.position = end;
        }
        if records.is_empty() {
            // At the end: a file rotated away (new inode) or truncated in place is read anew
            // from its start once the old one is exhausted.
            match tokio::fs::metadata(&config.file).await {
                Ok(now) if Some(now.ino()) != self.inode || now.len() < self.position => {
                    warn!(file = %config.file.display(), "the file was rotated or truncated; reading the new one from the start");
                    self.reader = None;
                    self.position = 0;
                }
                _ => tokio::time::sleep(idle).await,
            }
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::{OffsetReader, SourceOffset};
    use std::io::Write;

    struct Offsets(Option<SourceOffset>);

    #[async_trait]
    impl OffsetReader for Offsets {
        async fn offset(&self, _: &SourcePartition) -> Result<Option<SourceOffset>> {
            Ok(self.0.clone())
        }
    }

    async fn start(path: &std::path::Path, position: Option<u64>) -> FileSourceTask {
        let raw = json!({"file": path.to_str().unwrap(), "topic": "lines", "poll_interval": 1});
        let config = source_spec().validate(raw.as_object().unwrap()).unwrap();
        let stored = position.map(|p| json!({"position": p}).as_object().cloned().unwrap());
        let ctx = SourceTaskContext {
            connector: "c".into(),
            task_id: 0,
            offsets: Arc::new(Offsets(stored)),
            work_dir: std::env::temp_dir(),
        };
        let mut task = FileSourceTask::default();
        task.start(ctx, &config).await.unwrap();
        task
    }

    fn lines(records: &[SourceRecord]) -> Vec<&str> {
        records.iter().map(|r| r.value.as_str().unwrap()).collect()
    }

    #[tokio::test]
    async fn holds_back_a_partial_line_and_resumes_at_the_offset() {
        let dir = tempfile_dir("partial");
        let path = dir.join("in.txt");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"one\r\ntwo\nthr").unwrap();
        let mut task = start(&path, None).await;
        let batch = task.poll().await.unwrap();
        assert_eq!(lines(&batch), ["one", "two"]);
        assert_eq!(batch[1].source_offset["position"], json!(9));
        assert!(task.poll().await.unwrap().is_empty());
        f.write_all(b"ee\nfour\n").unwrap();
        let batch = task.poll().await.unwrap();
        assert_eq!(lines(&batch), ["three", "four"]);

        let mut resumed = start(&path, Some(9)).await;
        assert_eq!(lines(&resumed.poll().await.unwrap()), ["three", "four"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn follows_rotation_and_truncation() {
        let dir = tempfile_dir("rotation");
        let path = dir.join("app.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        let mut task = start(&path, None).await;
        assert_eq!(lines(&task.poll().await.unwrap()), ["a", "b"]);
        // Rotation: the file is renamed away and a new one starts.
        std::fs::rename(&path, dir.join("app.log.1")).unwrap();
        std::fs::write(&path, "c\n").unwrap();
        assert!(task.poll().await.unwrap().is_empty());
        assert_eq!(lines(&task.poll().await.unwrap()), ["c"]);
        // Truncation in place (copytruncate).
        std::fs::write(&path, "").unwrap();
        assert!(task.poll().await.unwrap().is_empty());
        std::fs::write(&path, "d\n").unwrap();
        assert_eq!(lines(&task.poll().await.unwrap()), ["d"]);
        // A stored offset from another file (other inode) does not skip the new file's start.
        let stored = task.position;
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "e\nf\n").unwrap();
        let mut fresh = start(&path, Some(stored)).await;
        fresh.stored_inode = Some(u64::MAX);
        assert_eq!(lines(&fresh.poll().await.unwrap()), ["e", "f"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sluice-file-source-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
