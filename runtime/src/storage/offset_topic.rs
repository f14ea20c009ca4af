//! Source offsets in distributed mode: the offsets topic (compacted), keyed
//! `["<connector>", {source partition}]` with the source offset as JSON value, as Kafka Connect
//! lays it out; a tombstone deletes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value as Json;
use sluice_connector_api::{SourceOffset, SourcePartition};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::log::{KafkaLog, LogRecord};
use super::{OffsetStore, StorageError, offset_key};
use crate::config::WorkerConfig;

type Offsets = HashMap<String, HashMap<String, (SourcePartition, SourceOffset)>>;

/// Reads and writes the offsets topic.
#[derive(Clone)]
pub struct TopicOffsetStore {
    log: Arc<KafkaLog>,
    /// connector -> key text -> (partition, offset)
    offsets: Arc<Mutex<Offsets>>,
}

fn apply(offsets: &mut Offsets, key: &[u8], value: Option<&[u8]>) {
    let Ok(Json::Array(parts)) = serde_json::from_slice::<Json>(key) else {
        warn!("skipping an offsets record whose key is not [connector, partition]");
        return;
    };
    let (Some(Json::String(connector)), Some(Json::Object(partition))) =
        (parts.first(), parts.get(1))
    else {
        warn!("skipping an offsets record whose key is not [connector, partition]");
        return;
    };
    let text = offset_key(connector, partition);
    match value.map(serde_json::from_slice::<Json>) {
        Some(Ok(Json::Object(offset))) => {
            offsets
                .entry(connector.clone())
                .or_default()
                .insert(text, (partition.clone(), offset));
        }
        None | Some(Ok(Json::Null)) => {
            if let Some(map) = offsets.get_mut(connector) {
                map.remove(&text);
            }
        }
        Some(_) => warn!(
            connector,
            "skipping an offsets record whose value is not an object"
        ),
    }
}

impl TopicOffsetStore {
    pub(crate) async fn start(
        worker: &WorkerConfig,
        topic: &str,
        client_id: &str,
        cancel: CancellationToken,
    ) -> Result<Self, StorageError> {
        let offsets = Arc::new(Mutex::new(Offsets::new()));
        let applied = offsets.clone();
        let apply = Box::new(move |r: LogRecord<'_>| {
            if let Some(key) = r.key {
                apply(
                    &mut applied.lock().unwrap_or_else(|e| e.into_inner()),
                    key,
                    r.value,
                );
            }
        });
        let log = KafkaLog::start(worker, topic, client_id, apply, cancel).await?;
        Ok(Self {
            log: Arc::new(log),
            offsets,
        })
    }

    fn snapshot(&self, connector: &str) -> Vec<(SourcePartition, SourceOffset)> {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = offsets
            .get(connector)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by_key(|(p, _)| Json::Object(p.clone()).to_string());
        all
    }

    async fn write_all(
        &self,
        connector: &str,
        offsets: &[(SourcePartition, Option<SourceOffset>)],
    ) -> Result<(), StorageError> {
        let sends = offsets.iter().map(|(partition, offset)| {
            let key = offset_key(connector, partition);
            let value = offset
                .as_ref()
                .map(|o| Json::Object(o.clone()).to_string().into_bytes());
            async move { self.log.send(&key, value.as_deref()).await }
        });
        for result in futures::future::join_all(sends).await {
            result?;
        }
        let mut map = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        for (partition, offset) in offsets {
            let key = offset_key(connector, partition);
            apply(
                &mut map,
                key.as_bytes(),
                offset
                    .as_ref()
                    .map(|o| Json::Object(o.clone()).to_string().into_bytes())
                    .as_deref(),
            );
        }
        Ok(())
    }
}

#[async_trait]
impl OffsetStore for TopicOffsetStore {
    async fn get(
        &self,
        connector: &str,
        partition: &SourcePartition,
    ) -> Result<Option<SourceOffset>, StorageError> {
        let offsets = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        Ok(offsets
            .get(connector)
            .and_then(|m| m.get(&offset_key(connector, partition)))
            .map(|(_, o)| o.clone()))
    }

    async fn put(
        &self,
        connector: &str,
        offsets: &[(SourcePartition, SourceOffset)],
    ) -> Result<(), StorageError> {
        let offsets: Vec<_> = offsets
            .iter()
            .map(|(p, o)| (p.clone(), Some(o.clone())))
            .collect();
        self.write_all(connector, &offsets).await
    }

    async fn all(
        &self,
        connector: &str,
    ) -> Result<Vec<(SourcePartition, SourceOffset)>, StorageError> {
        Ok(self.snapshot(connector))
    }

    async fn write(
        &self,
        connector: &str,
        changes: &[(SourcePartition, Option<SourceOffset>)],
    ) -> Result<(), StorageError> {
        self.write_all(connector, changes).await
    }

    async fn read_to_end(&self) -> Result<(), StorageError> {
        self.log.read_to_end().await.map(drop)
    }
}
