//! Shared helpers: a cluster per test, settings built through the real configuration loader,
//! and a tracing capture for log assertions.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgwarden::config::{LoadOptions, Settings};
use pgwarden::Warden;
pub use pgwarden_testkit::PgCluster;

/// Settings for `url` with the given `section.key = value` overrides (as command-line flags).
pub fn settings(url: &str, overrides: &[(&str, &str)]) -> Settings {
    let mut flags = vec![("upstream.url".to_string(), url.to_string())];
    flags.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let options = LoadOptions {
        flags,
        ..LoadOptions::default()
    };
    Settings::load(&options)
        .expect("valid test settings")
        .settings
}

/// A cluster and a warden in front of it, with an application name unique to the test so
/// `pg_stat_activity` counts see only this test's connections.
pub fn warden(cluster: &PgCluster, app: &str, overrides: &[(&str, &str)]) -> Warden {
    let mut all = vec![("upstream.application_name", app)];
    all.extend_from_slice(overrides);
    Warden::new(settings(&cluster.url("postgres", "postgres"), &all)).expect("warden")
}

/// Polls `check` every 50 ms until it returns true or `limit` passes; returns the last answer.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects formatted log lines of the current thread while the guard lives.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture as this thread's default subscriber (current-thread runtimes run
    /// every spawned task on this thread, so the pool's background logs are captured too).
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
