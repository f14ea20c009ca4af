use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sluice_connector_api::{SourceOffset, SourcePartition};
use tokio::sync::Mutex;

use super::{OffsetStore, StorageError, offset_key, offset_key_json};

/// One stored offset, in the offsets topic's key/value layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    key: Json,
    value: SourceOffset,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileLayout {
    version: u32,
    offsets: Vec<Entry>,
}

/// Source offsets in a local JSON file, replaced atomically (write temp, fsync, rename, fsync dir)
/// on every flush, so a crash leaves either the old or the new file, never a torn one.
#[derive(Debug)]
pub struct FileOffsetStore {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl FileOffsetStore {
    /// Opens the store, reading the file if it exists.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let path = path.into();
        let read_path = path.clone();
        let entries = tokio::task::spawn_blocking(move || read(&read_path)).await??;
        Ok(Self {
            path,
            entries: Mutex::new(entries),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read(path: &Path) -> Result<BTreeMap<String, Entry>, StorageError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(StorageError::Io {
                action: "read",
                path: path.display().to_string(),
                source,
            });
        }
    };
    let layout: FileLayout =
        serde_json::from_slice(&bytes).map_err(|source| StorageError::Corrupt {
            path: path.display().to_string(),
            source,
        })?;
    Ok(layout
        .offsets
        .into_iter()
        .map(|e| (e.key.to_string(), e))
        .collect())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let io = |action: &'static str, p: &Path| {
        let p = p.display().to_string();
        move |source| StorageError::Io {
            action,
            path: p,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("rename onto", path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))?;
    Ok(())
}

#[async_trait]
impl OffsetStore for FileOffsetStore {
    async fn get(
        &self,
        connector: &str,
        partition: &SourcePartition,
    ) -> Result<Option<SourceOffset>, StorageError> {
        let entries = self.entries.lock().await;
        Ok(entries
            .get(&offset_key(connector, partition))
            .map(|e| e.value.clone()))
    }

    async fn put(
        &self,
        connector: &str,
        offsets: &[(SourcePartition, SourceOffset)],
    ) -> Result<(), StorageError> {
        let changes: Vec<_> = offsets
            .iter()
            .map(|(p, o)| (p.clone(), Some(o.clone())))
            .collect();
        self.write(connector, &changes).await
    }

    async fn all(
        &self,
        connector: &str,
    ) -> Result<Vec<(SourcePartition, SourceOffset)>, StorageError> {
        let entries = self.entries.lock().await;
        Ok(entries
            .values()
            .filter_map(|e| match (e.key.get(0), e.key.get(1)) {
                (Some(Json::String(c)), Some(Json::Object(p))) if c == connector => {
                    Some((p.clone(), e.value.clone()))
                }
                _ => None,
            })
            .collect())
    }

    async fn write(
        &self,
        connector: &str,
        changes: &[(SourcePartition, Option<SourceOffset>)],
    ) -> Result<(), StorageError> {
        // Held across the write so concurrent writers cannot reorder file contents: they reach
        // the file in the order they change the map.
        let mut entries = self.entries.lock().await;
        for (partition, offset) in changes {
            let key = offset_key_json(connector, partition);
            match offset {
                Some(offset) => {
                    entries.insert(
                        key.to_string(),
                        Entry {
                            key,
                            value: offset.clone(),
                        },
                    );
                }
                None => {
                    entries.remove(&key.to_string());
                }
            }
        }
        let layout = FileLayout {
            version: 1,
            offsets: entries.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&layout).map_err(|source| StorageError::Corrupt {
            path: self.path.display().to_string(),
            source,
        })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes)).await??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Json) -> serde_json::Map<String, Json> {
        v.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn offsets_survive_reopen_and_are_scoped_by_connector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/offsets.json");
        let store = FileOffsetStore::open(&path).await.unwrap();
        let p = map(json!({"filename": "a.txt"}));
        store
            .put("c1", &[(p.clone(), map(json!({"position": 10})))])
            .await
            .unwrap();
        store
            .put("c1", &[(p.clone(), map(json!({"position": 20})))])
            .await
            .unwrap();
        store
            .put("c2", &[(p.clone(), map(json!({"position": 5})))])
            .await
            .unwrap();

        let reopened = FileOffsetStore::open(&path).await.unwrap();
        assert_eq!(
            reopened.get("c1", &p).await.unwrap(),
            Some(map(json!({"position": 20})))
        );
        assert_eq!(
            reopened.get("c2", &p).await.unwrap(),
            Some(map(json!({"position": 5})))
        );
        assert_eq!(reopened.get("c3", &p).await.unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""c1""#) && !path.with_extension("json.tmp").exists());
    }

    #[tokio::test]
    async fn a_corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.json");
        std::fs::write(&path, "{oops").unwrap();
        let err = FileOffsetStore::open(&path).await.unwrap_err();
        assert!(
            err.to_string().contains("is not a valid offsets file"),
            "{err}"
        );
    }
}
