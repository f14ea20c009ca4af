//! Derived schemas, cached per input schema: every record of a stream repeats the same schema, so
//! a transform derives its output schema once, as Kafka Connect's `SynchronizedCache` does.

use std::sync::{Arc, Mutex};

use sluice_connector_api::{Schema, SchemaRef};

use super::TransformError;

/// Schemas kept per transform; a stream rarely has more than a few at once.
const CAPACITY: usize = 16;

/// Input schema -> derived schema. Found by `Arc` identity first (records of one source task share
/// their schema), then by equality (converters that parse a schema per message make new `Arc`s).
/// Holding the input `Arc` keeps its address from being reused while cached. Returning the same
/// output `Arc` for the same input lets converters downstream cache by identity too.
#[derive(Debug, Default)]
pub(crate) struct SchemaCache {
    entries: Mutex<Vec<(SchemaRef, SchemaRef)>>,
}

impl SchemaCache {
    pub(crate) fn get_or_try(
        &self,
        input: &SchemaRef,
        build: impl FnOnce(&Schema) -> Result<Schema, TransformError>,
    ) -> Result<SchemaRef, TransformError> {
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let found = entries
                .iter()
                .find(|(i, _)| Arc::ptr_eq(i, input))
                .or_else(|| entries.iter().find(|(i, _)| **i == **input));
            if let Some((_, output)) = found {
                return Ok(output.clone());
            }
        }
        // Built outside the lock: another thread may build the same schema, which is harmless.
        let output = Arc::new(build(input)?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.remove(0);
        }
        entries.push((input.clone(), output.clone()));
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_schema_yields_the_same_derived_arc() {
        let cache = SchemaCache::default();
        let input = Arc::new(Schema::string());
        let a = cache
            .get_or_try(&input, |s| Ok(s.clone().optional()))
            .unwrap();
        let b = cache
            .get_or_try(&input, |_| panic!("must come from the cache"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // An equal schema in a new Arc is found too.
        let c = cache
            .get_or_try(&Arc::new(Schema::string()), |_| panic!("equal schema"))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &c));
        let d = cache
            .get_or_try(&Arc::new(Schema::int32()), |s| Ok(s.clone()))
            .unwrap();
        assert_eq!(*d, Schema::int32());
    }
}
