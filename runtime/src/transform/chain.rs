//! The transform and predicate traits, and a connector's chain of steps.

use std::fmt;
use std::sync::Arc;

use super::{TransformError, TransformRecord};

/// One single message transform. Implementations are pure functions of the record (plus caches
/// of derived schemas), shared by all tasks of a connector, so they must be `Send + Sync`.
pub trait Transform: Send + Sync {
    /// The transformed record, or `None` when the record is dropped (Filter, or a CDC delete).
    fn apply(&self, record: TransformRecord) -> Result<Option<TransformRecord>, TransformError>;

    /// A batch, one result per record in order. Transforms with a per-call cost (WASM plugins)
    /// override this; the default applies [`Self::apply`] to each record.
    fn apply_batch(
        &self,
        records: Vec<TransformRecord>,
    ) -> Vec<Result<Option<TransformRecord>, TransformError>> {
        records.into_iter().map(|r| self.apply(r)).collect()
    }
}

/// A condition on a record, named in the `predicates:` list and referenced by steps.
pub trait Predicate: Send + Sync {
    fn test(&self, record: &TransformRecord) -> bool;
}

/// A step: a transform, applied only when its predicate (if any) holds, or does not hold when
/// `negate` is set.
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) transform: Box<dyn Transform>,
    pub(crate) predicate: Option<Arc<dyn Predicate>>,
    pub(crate) negate: bool,
}

/// A connector's transforms in order. An empty chain passes records through unchanged.
#[derive(Default)]
pub struct Chain {
    pub(crate) steps: Vec<Step>,
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// The steps' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.name.as_str())
    }

    /// Runs the record through every step. `Ok(None)` means a step dropped it; an error names the
    /// step that failed ([`TransformError::Step`]).
    pub fn apply(
        &self,
        mut record: TransformRecord,
    ) -> Result<Option<TransformRecord>, TransformError> {
        for step in &self.steps {
            if let Some(predicate) = &step.predicate
                && predicate.test(&record) == step.negate
            {
                continue;
            }
            match step.transform.apply(record) {
                Ok(Some(next)) => record = next,
                Ok(None) => return Ok(None),
                Err(source) => {
                    return Err(TransformError::Step {
                        step: step.name.clone(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(Some(record))
    }

    /// Runs a batch through every step, each step seeing all the records still alive that its
    /// predicate selects at once. Same results, in order, as [`Self::apply`] on each record.
    pub fn apply_batch(
        &self,
        records: Vec<TransformRecord>,
    ) -> Vec<Result<Option<TransformRecord>, TransformError>> {
        let mut states: Vec<Result<Option<TransformRecord>, TransformError>> =
            records.into_iter().map(|r| Ok(Some(r))).collect();
        for step in &self.steps {
            let mut picked = Vec::new();
            let mut batch = Vec::new();
            for (i, state) in states.iter_mut().enumerate() {
                let Ok(Some(record)) = state else { continue };
                if let Some(predicate) = &step.predicate
                    && predicate.test(record) == step.negate
                {
                    continue;
                }
                if let Ok(Some(record)) = std::mem::replace(state, Ok(None)) {
                    picked.push(i);
                    batch.push(record);
                }
            }
            if batch.is_empty() {
                continue;
            }
            for (i, result) in picked.into_iter().zip(step.transform.apply_batch(batch)) {
                states[i] = result.map_err(|source| TransformError::Step {
                    step: step.name.clone(),
                    source: Box::new(source),
                });
            }
        }
        states
    }
}

/// Kafka Connect's `Filter`: drops every record it is applied to; used with a predicate.
pub(crate) struct Filter;

impl Transform for Filter {
    fn apply(&self, _record: TransformRecord) -> Result<Option<TransformRecord>, TransformError> {
        Ok(None)
    }
}
