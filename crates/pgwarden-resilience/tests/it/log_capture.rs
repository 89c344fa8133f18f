//! A minimal tracing subscriber that records every event's level and message.

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Recorded log lines, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct LogLines(Arc<Mutex<Vec<(Level, String)>>>);

impl LogLines {
    /// Installs a recorder for the current thread until the guard drops.
    pub(crate) fn install() -> (LogLines, tracing::subscriber::DefaultGuard) {
        let lines = LogLines::default();
        let guard = tracing::subscriber::set_default(Recorder(lines.clone()));
        (lines, guard)
    }

    /// All lines so far.
    pub(crate) fn all(&self) -> Vec<(Level, String)> {
        self.0.lock().expect("log lock").clone()
    }

    /// Lines at `level`.
    pub(crate) fn at(&self, level: Level) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m)
            .collect()
    }
}

struct Recorder(LogLines);

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        let level = *event.metadata().level();
        (self.0)
            .0
            .lock()
            .expect("log lock")
            .push((level, visitor.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
