use std::sync::Arc;

use async_trait::async_trait;
use sluice_connector_api::{
    ConnectorError, ErrorKind, OffsetReader, Result, SourceOffset, SourcePartition,
};

use crate::storage::OffsetStore;

/// A connector's view of the offset store, handed to its source tasks.
pub(crate) struct ConnectorOffsets {
    pub(crate) connector: String,
    pub(crate) store: Arc<dyn OffsetStore>,
}

#[async_trait]
impl OffsetReader for ConnectorOffsets {
    async fn offset(&self, partition: &SourcePartition) -> Result<Option<SourceOffset>> {
        self.store
            .get(&self.connector, partition)
            .await
            .map_err(|e| {
                ConnectorError::with_source(
                    ErrorKind::Retriable,
                    "cannot read committed offsets",
                    e,
                )
            })
    }
}
