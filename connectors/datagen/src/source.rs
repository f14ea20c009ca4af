use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use sluice_connector_api::{
    ConfigSpec, ConnectorConfig, ConnectorError, Decimal, Result, Schema, SchemaRef,
    SourceConnector, SourcePartition, SourcePlugin, SourceRecord, SourceTask, SourceTaskContext,
    Struct, Value,
};
use tokio::time::Instant;

use crate::config::{DatagenConfig, spec};

/// `created` of record 0; later records are one second apart.
const EPOCH_MS: i64 = 1_700_000_000_000;
/// How long an idle poll waits before returning an empty batch.
const IDLE_POLL: Duration = Duration::from_millis(200);

static KEY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| Arc::new(Schema::string()));
static VALUE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(
        Schema::struct_builder()
            .name("sluice.datagen.Record")
            .field("seq", Schema::int64())
            .field("name", Schema::string())
            .field("amount", Schema::decimal(2))
            .field("created", Schema::timestamp())
            .build(),
    )
});

/// The key and value of record `seq`: pure functions of `seq`, so readers can verify them.
pub fn record_for(seq: u64) -> (Value, Value) {
    let seq_i = seq as i64;
    let value = Struct::new()
        .with("seq", seq_i)
        .with("name", format!("user-{:04}", seq % 10_000))
        .with("amount", Decimal::new(((seq_i * 37) % 100_000).into(), 2))
        .with("created", Value::Timestamp(EPOCH_MS + seq_i * 1000));
    (Value::String(seq.to_string()), Value::Struct(value))
}

pub struct DatagenPlugin;

impl SourcePlugin for DatagenPlugin {
    fn name(&self) -> &str {
        "datagen"
    }
    fn doc(&self) -> &str {
        "Deterministic synthetic records (seq, name, amount, created) for demos, tests and benchmarks."
    }
    fn spec(&self) -> ConfigSpec {
        spec()
    }
    fn connector(&self) -> Box<dyn SourceConnector> {
        Box::new(DatagenConnector::default())
    }
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(DatagenTask::default())
    }
}

#[derive(Default)]
struct DatagenConnector {
    config: ConnectorConfig,
}

#[async_trait]
impl SourceConnector for DatagenConnector {
    async fn start(&mut self, config: &ConnectorConfig) -> Result<()> {
        self.config = config.clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: u32) -> Result<Vec<ConnectorConfig>> {
        let n = u64::from(max_tasks.max(1));
        Ok((0..n)
            .map(|i| {
                self.config
                    .clone()
                    .with("task_index", i)
                    .with("task_count", n)
            })
            .collect())
    }
}

#[derive(Default)]
struct DatagenTask {
    config: Option<DatagenConfig>,
    partition: SourcePartition,
    /// Next sequence number this task produces.
    next: u64,
    started: Option<Instant>,
    produced_since_start: u64,
}

impl DatagenTask {
    fn config(&self) -> Result<&DatagenConfig> {
        self.config
            .as_ref()
            .ok_or_else(|| ConnectorError::fatal("datagen task polled before start"))
    }

    /// How many records the rate limit allows now (all of the batch when unlimited).
    fn allowed_now(&self, config: &DatagenConfig) -> u64 {
        let Some(rate) = config.rate else {
            return u64::MAX;
        };
        let per_task = rate / config.task_count as f64;
        let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        ((elapsed * per_task) as u64 + 1).saturating_sub(self.produced_since_start)
    }
}

#[async_trait]
impl SourceTask for DatagenTask {
    async fn start(&mut self, ctx: SourceTaskContext, config: &ConnectorConfig) -> Result<()> {
        let config: DatagenConfig = config.parse()?;
        self.partition = json!({"task": config.task_index})
            .as_object()
            .cloned()
            .unwrap_or_default();
        self.next = match ctx.offsets.offset(&self.partition).await? {
            Some(offset) => {
                let last = offset
                    .get("seq")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| {
                        ConnectorError::data(format!(
                            "stored datagen offset {offset:?} has no integer `seq`"
                        ))
                    })?;
                last + config.task_count
            }
            None => config.task_index,
        };
        self.started = Some(Instant::now());
        self.config = Some(config);
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let config = self.config()?.clone();
        let finished = config.count.is_some_and(|count| self.next >= count);
        let allowed = self.allowed_now(&config).min(config.batch_size as u64);
        if finished || allowed == 0 {
            tokio::time::sleep(if finished {
                IDLE_POLL
            } else {
                Duration::from_millis(10)
            })
            .await;
            return Ok(Vec::new());
        }
        let mut records = Vec::with_capacity(allowed as usize);
        while (records.len() as u64) < allowed && config.count.is_none_or(|count| self.next < count)
        {
            let seq = self.next;
            let (key, value) = record_for(seq);
            let offset = json!({"seq": seq}).as_object().cloned().unwrap_or_default();
            records.push(
                SourceRecord::new(
                    config.topic.clone(),
                    Some(VALUE_SCHEMA.clone()),
                    value,
                    self.partition.clone(),
                    offset,
                )
                .with_key(Some(KEY_SCHEMA.clone()), key),
            );
            self.next += config.task_count;
        }
        self.produced_since_start += records.len() as u64;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_connector_api::{OffsetReader, SourceOffset};

    struct Offsets(Option<SourceOffset>);

    #[async_trait]
    impl OffsetReader for Offsets {
        async fn offset(&self, _: &SourcePartition) -> Result<Option<SourceOffset>> {
            Ok(self.0.clone())
        }
    }

    async fn task(index: u64, tasks: u64, count: u64, stored: Option<u64>) -> DatagenTask {
        let raw = json!({"topic": "t", "count": count});
        let config = spec().validate(raw.as_object().unwrap()).unwrap();
        let config = config.with("task_index", index).with("task_count", tasks);
        let offsets = Offsets(stored.map(|s| json!({"seq": s}).as_object().cloned().unwrap()));
        let ctx = SourceTaskContext {
            connector: "c".into(),
            task_id: 0,
            offsets: Arc::new(offsets),
            work_dir: std::env::temp_dir(),
        };
        let mut t = DatagenTask::default();
        t.start(ctx, &config).await.unwrap();
        t
    }

    async fn drain(t: &mut DatagenTask) -> Vec<i64> {
        let mut seqs = Vec::new();
        loop {
            let batch = t.poll().await.unwrap();
            if batch.is_empty() {
                return seqs;
            }
            for r in batch {
                seqs.push(
                    r.value
                        .as_struct()
                        .unwrap()
                        .get("seq")
                        .unwrap()
                        .as_i64()
                        .unwrap(),
                );
            }
        }
    }

    #[tokio::test]
    async fn tasks_split_the_sequence_and_resume_after_the_stored_offset() {
        let mut a = task(0, 2, 1001, None).await;
        let mut b = task(1, 2, 1001, None).await;
        let (sa, sb) = (drain(&mut a).await, drain(&mut b).await);
        assert_eq!(sa.len(), 501);
        assert_eq!(sb.len(), 500);
        let mut all: Vec<i64> = sa.into_iter().chain(sb).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1001).collect::<Vec<_>>());

        let mut resumed = task(1, 2, 1001, Some(901)).await;
        assert_eq!(
            drain(&mut resumed).await,
            (903..1001).step_by(2).collect::<Vec<_>>()
        );
    }

    #[test]
    fn records_are_pure_functions_of_seq() {
        let (key, value) = record_for(42);
        assert_eq!(key, Value::String("42".into()));
        assert!(VALUE_SCHEMA.validate_value(&value).is_ok());
        assert_eq!(
            value.as_struct().unwrap().get("amount"),
            Some(&Value::Decimal(Decimal::new(1554.into(), 2)))
        );
        assert_eq!(record_for(42), record_for(42));
    }
}
