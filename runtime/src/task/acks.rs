//! Acknowledgements of the records a source task produced, settled in send order.
//!
//! Each record sent gets the next sequence number as its delivery opaque; librdkafka's delivery
//! report (on the producer's poll thread) settles that slot. The task takes settled slots from
//! the front only, so a source offset is taken once every record sent before it was acknowledged
//! too. This replaces a oneshot channel and a boxed future per record.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

/// The producer of one source task: deliveries settle slots of its [`AckWindow`].
pub(crate) type SourceProducer = ThreadedProducer<AckContext>;

/// The outcome of one sent (or skipped) record.
enum Slot {
    Pending,
    Done,
    Failed(KafkaError),
}

#[derive(Default)]
struct Slots {
    /// Sequence number of `slots[0]`.
    base: usize,
    slots: VecDeque<Slot>,
}

/// Outcomes of a task's records in send order, shared with the producer's delivery callback.
#[derive(Default)]
pub(crate) struct AckWindow {
    state: Mutex<Slots>,
    /// Woken on every settled delivery.
    settled: Notify,
}

/// What [`AckWindow::take_settled`] found at the front of the window.
pub(crate) struct Settled {
    /// Records acknowledged (or skipped), in order, before the first failure or pending one.
    pub(crate) done: usize,
    /// The failure that stopped the run, if any; its record is taken too.
    pub(crate) failed: Option<KafkaError>,
}

impl AckWindow {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a record about to be sent; returns its sequence number (the delivery opaque).
    pub(crate) fn open(&self) -> usize {
        let mut state = self.lock();
        state.slots.push_back(Slot::Pending);
        state.base + state.slots.len() - 1
    }

    /// Adds a record that needs no acknowledgement (dropped or skipped): settled at once.
    pub(crate) fn open_done(&self) {
        self.lock().slots.push_back(Slot::Done);
    }

    /// Settles record `seq`.
    pub(crate) fn settle(&self, seq: usize, result: Result<(), KafkaError>) {
        {
            let mut state = self.lock();
            let Some(index) = seq.checked_sub(state.base) else {
                return;
            };
            if let Some(slot) = state.slots.get_mut(index) {
                *slot = match result {
                    Ok(()) => Slot::Done,
                    Err(e) => Slot::Failed(e),
                };
            }
        }
        self.settled.notify_one();
    }

    /// Takes the settled records at the front, in send order, up to and including a failure.
    pub(crate) fn take_settled(&self) -> Settled {
        let mut state = self.lock();
        let mut done = 0;
        let mut failed = None;
        while let Some(front) = state.slots.front() {
            match front {
                Slot::Pending => break,
                Slot::Done => done += 1,
                Slot::Failed(_) => {}
            }
            if let Some(Slot::Failed(e)) = state.slots.pop_front() {
                failed = Some(e);
            }
            state.base += 1;
            if failed.is_some() {
                break;
            }
        }
        Settled { done, failed }
    }

    /// Waits until a delivery was settled since the last wait (returns at once if one was).
    pub(crate) async fn wait(&self) {
        self.settled.notified().await;
    }
}

/// The producer context that settles deliveries in an [`AckWindow`].
pub(crate) struct AckContext {
    pub(crate) window: Arc<AckWindow>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        self.window.settle(seq, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::types::RDKafkaErrorCode;

    #[test]
    fn settles_in_send_order_only() {
        let window = AckWindow::default();
        let a = window.open();
        let b = window.open();
        window.open_done();
        let c = window.open();
        window.settle(b, Ok(()));
        assert_eq!(window.take_settled().done, 0, "b waits for a");
        window.settle(a, Ok(()));
        let settled = window.take_settled();
        assert_eq!(settled.done, 3, "a, b and the skipped record");
        assert!(settled.failed.is_none());
        window.settle(
            c,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )),
        );
        let settled = window.take_settled();
        assert_eq!(settled.done, 0);
        assert!(settled.failed.is_some());
        assert_eq!(window.open(), c + 1, "sequence numbers keep counting");
    }

    #[test]
    fn stops_at_a_failure() {
        let window = AckWindow::default();
        let a = window.open();
        let b = window.open();
        window.settle(b, Ok(()));
        window.settle(a, Err(KafkaError::Canceled));
        let settled = window.take_settled();
        assert_eq!(settled.done, 0);
        assert!(settled.failed.is_some());
        assert_eq!(
            window.take_settled().done,
            1,
            "b after the failure is still there"
        );
    }
}
