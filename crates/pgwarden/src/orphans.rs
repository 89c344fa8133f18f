//! Orphan cleanup for the library and for `pgwarden serve` alike: finds the server backends an
//! earlier (crashed) instance of this application left behind and terminates them, at start-up,
//! on demand, and once the upstream is reached after a degraded start. Which backends qualify is decided by
//! [`pgwarden_resilience::select_orphans`]; this file runs the queries and keeps the report.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use pgwarden_resilience::{
    select_orphans, BackendRow, InstanceTag, OrphanCleanup, OrphanPolicy, ProberHandle,
    TransitionEvent, UpstreamState, ORPHAN_QUERY, TERMINATE_SQL,
};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::pg::PgConnector;

/// SQLSTATE `insufficient_privilege`: `pg_terminate_backend` without `pg_signal_backend`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// What an orphan cleanup found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Backends of other (dead) instances idle past the threshold.
    pub found: usize,
    /// Of those, terminated.
    pub terminated: usize,
    /// Of those, not terminated for lack of privilege.
    pub denied: usize,
    /// Their process ids.
    pub pids: Vec<i32>,
}

/// Runs cleanups for one instance and remembers the last report. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OrphanCleaner {
    /// Opens the one unpooled maintenance connection (tagged like the pool's).
    connector: PgConnector,
    policy: OrphanPolicy,
    last: Arc<Mutex<Option<OrphanReport>>>,
}

impl OrphanCleaner {
    /// A cleaner for the instance `tag`, connecting with `connector`.
    pub fn new(
        connector: PgConnector,
        tag: InstanceTag,
        idle_threshold: Duration,
    ) -> OrphanCleaner {
        OrphanCleaner {
            connector,
            policy: OrphanPolicy {
                own_instance_tag: tag,
                idle_threshold,
            },
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The last cleanup's report, if one finished.
    pub fn last(&self) -> Option<OrphanReport> {
        self.last.lock().clone()
    }

    /// One cleanup: lists the candidates, terminates the orphans, logs one line if it found
    /// any, keeps the report and hands its counts to `upstream`'s status summary.
    pub async fn run(&self, upstream: Option<&ProberHandle>) -> Result<OrphanReport, Error> {
        let conn = self.connector.connect_unpooled().await?;
        let result = self.run_on(conn.client()).await;
        conn.close().await;
        let report = result?;
        if report.denied > 0 {
            tracing::warn!(
                denied = report.denied,
                "found {} orphaned server connections of earlier instances but may not terminate them; \
                 GRANT pg_signal_backend TO {} would allow it",
                report.denied,
                self.connector.user()
            );
        } else if report.found > 0 {
            tracing::info!(
                terminated = report.terminated,
                "terminated {} orphaned server connections left by earlier instances",
                report.terminated
            );
        }
        *self.last.lock() = Some(report.clone());
        if let Some(upstream) = upstream {
            upstream.report_orphan_cleanup(OrphanCleanup {
                found: report.found,
                terminated: report.terminated,
                denied: report.denied,
                at: SystemTime::now(),
            });
        }
        Ok(report)
    }

    async fn run_on(&self, client: &tokio_postgres::Client) -> Result<OrphanReport, Error> {
        let prefix = self.policy.own_instance_tag.query_prefix();
        let rows = client.query(ORPHAN_QUERY, &[&prefix]).await?;
        let rows: Vec<BackendRow> = rows
            .iter()
            .map(|r| BackendRow {
                pid: r.get(0),
                application_name: r.get::<_, Option<String>>(1).unwrap_or_default(),
                state: r.get::<_, Option<String>>(2).unwrap_or_default(),
                state_change_age: Duration::from_secs_f64(
                    r.get::<_, Option<f64>>(3).unwrap_or(0.0).max(0.0),
                ),
                backend_start: None,
            })
            .collect();
        let pids = select_orphans(&rows, &self.policy);
        let mut report = OrphanReport {
            found: pids.len(),
            pids: pids.clone(),
            ..OrphanReport::default()
        };
        for pid in pids {
            match client.query_one(TERMINATE_SQL, &[&pid]).await {
                Ok(row) if row.get::<_, Option<bool>>(0).unwrap_or(false) => report.terminated += 1,
                Ok(_) => {}
                Err(e) if e.code().is_some_and(|c| c.code() == INSUFFICIENT_PRIVILEGE) => {
                    report.denied += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(report)
    }

    /// After a degraded start: waits until the upstream is available (now or at its next
    /// `available` transition), then cleans once. A failed cleanup is logged and retried at
    /// the next recovery. Ends on `cancel`.
    pub async fn run_on_recovery(self, upstream: ProberHandle, cancel: CancellationToken) {
        // Subscribe before looking at the state, so a recovery in between is not missed.
        let mut transitions = upstream.subscribe();
        let mut available = upstream.state() == UpstreamState::Available;
        loop {
            if available {
                match self.run(Some(&upstream)).await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(error = %e, "orphan cleanup failed"),
                }
            }
            available = tokio::select! {
                _ = cancel.cancelled() => return,
                t = transitions.recv() => match t {
                    Ok(t) => matches!(t.event, TransitionEvent::Available { .. }),
                    Err(RecvError::Lagged(_)) => upstream.state() == UpstreamState::Available,
                    Err(RecvError::Closed) => return,
                },
            };
        }
    }
}
