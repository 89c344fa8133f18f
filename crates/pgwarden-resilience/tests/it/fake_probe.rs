//! A probe whose answer the test sets, counting how often it was asked.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use pgwarden_resilience::{Failure, Probe};

/// Shared control over a [`FakeProbe`].
#[derive(Clone)]
pub(crate) struct FakeProbe {
    answer: Arc<Mutex<Result<(), Failure>>>,
    calls: Arc<AtomicU32>,
}

impl FakeProbe {
    /// A probe answering `answer` until told otherwise.
    pub(crate) fn new(answer: Result<(), Failure>) -> FakeProbe {
        FakeProbe {
            answer: Arc::new(Mutex::new(answer)),
            calls: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Changes what later probes see.
    pub(crate) fn set(&self, answer: Result<(), Failure>) {
        *self.answer.lock().expect("probe lock") = answer;
    }

    /// Probes run so far.
    pub(crate) fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Probe for FakeProbe {
    async fn probe(&self) -> Result<(), Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.answer.lock().expect("probe lock").clone()
    }
}
