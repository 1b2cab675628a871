//! Shared record of collector runs and drop counters, read by the Status service.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sts_proto::daemon::v1::CollectorStatus;

use crate::clock::unix_ms_now;
use crate::poison::IgnorePoison;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Disabled,
    Starting,
    Ok,
    Failed,
    /// The source is absent (e.g. no Docker engine); does not make the daemon unhealthy.
    Unavailable,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Disabled => "disabled",
            State::Starting => "starting",
            State::Ok => "ok",
            State::Failed => "failed",
            State::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone)]
struct Collector {
    state: State,
    last_run_unix_ms: i64,
    last_duration: Duration,
    last_error: String,
    counts: BTreeMap<String, u64>,
    detail: String,
}

#[derive(Debug, Default)]
struct Inner {
    collectors: BTreeMap<&'static str, Collector>,
    drops: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<Inner>>);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().ignore_poison()
    }

    pub(crate) fn register(&self, name: &'static str, enabled: bool) {
        self.lock().collectors.insert(
            name,
            Collector {
                state: if enabled {
                    State::Starting
                } else {
                    State::Disabled
                },
                last_run_unix_ms: 0,
                last_duration: Duration::ZERO,
                last_error: String::new(),
                counts: BTreeMap::new(),
                detail: String::new(),
            },
        );
    }

    /// Records a run that finished now: its counts on success, its error on failure.
    pub(crate) fn record(
        &self,
        name: &'static str,
        duration: Duration,
        outcome: Result<Vec<(&'static str, u64)>, String>,
    ) {
        self.record_at(name, unix_ms_now(), duration, outcome);
    }

    /// Records a run that finished at `unix_ms` (0: never).
    pub(crate) fn record_at(
        &self,
        name: &'static str,
        unix_ms: i64,
        duration: Duration,
        outcome: Result<Vec<(&'static str, u64)>, String>,
    ) {
        let mut inner = self.lock();
        let Some(c) = inner.collectors.get_mut(name) else {
            return;
        };
        c.last_run_unix_ms = unix_ms;
        c.last_duration = duration;
        match outcome {
            Ok(counts) => {
                c.state = State::Ok;
                c.last_error.clear();
                c.counts = counts
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
            }
            Err(error) => {
                c.state = State::Failed;
                c.last_error = error;
            }
        }
    }

    /// Records that a collector's source cannot be reached, with the reason.
    pub(crate) fn record_unavailable(&self, name: &'static str, reason: String) {
        if let Some(c) = self.lock().collectors.get_mut(name) {
            c.state = State::Unavailable;
            c.last_run_unix_ms = unix_ms_now();
            c.last_error = reason;
        }
    }

    /// Says what a collector runs on (e.g. which backend and why).
    pub(crate) fn set_detail(&self, name: &'static str, detail: String) {
        if let Some(c) = self.lock().collectors.get_mut(name) {
            c.detail = detail;
        }
    }

    /// Sets a cumulative drop counter to a total kept elsewhere.
    pub(crate) fn set_drops(&self, key: &str, total: u64) {
        if total > 0 {
            self.lock().drops.insert(key.to_string(), total);
        }
    }

    /// Adds to a cumulative drop counter, e.g. `process.vanished`.
    pub(crate) fn add_drops(&self, key: &str, n: u64) {
        if n > 0 {
            *self.lock().drops.entry(key.to_string()).or_default() += n;
        }
    }

    /// Healthy unless a collector's last run failed.
    pub(crate) fn healthy(&self) -> bool {
        self.lock()
            .collectors
            .values()
            .all(|c| c.state != State::Failed)
    }

    /// One line for the health check message: "ok", or what failed.
    pub(crate) fn summary(&self) -> String {
        let inner = self.lock();
        let failed: Vec<String> = inner
            .collectors
            .iter()
            .filter(|(_, c)| c.state == State::Failed)
            .map(|(name, c)| format!("{name}: {}", c.last_error))
            .collect();
        if failed.is_empty() {
            "ok".into()
        } else {
            failed.join("; ")
        }
    }

    pub(crate) fn collectors(&self) -> Vec<CollectorStatus> {
        self.lock()
            .collectors
            .iter()
            .map(|(name, c)| CollectorStatus {
                name: name.to_string(),
                state: c.state.as_str().into(),
                last_run_unix_ms: c.last_run_unix_ms,
                last_duration_us: c.last_duration.as_micros() as u64,
                last_error: c.last_error.clone(),
                counts: c.counts.clone().into_iter().collect(),
                detail: c.detail.clone(),
            })
            .collect()
    }

    pub(crate) fn drops(&self) -> BTreeMap<String, u64> {
        self.lock().drops.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_makes_unhealthy_until_next_success() {
        let r = Registry::default();
        r.register("host", true);
        r.register("network", false);
        assert!(r.healthy());
        r.record("host", Duration::from_millis(3), Err("boom".into()));
        assert!(!r.healthy());
        assert_eq!(r.collectors()[0].last_error, "boom");
        r.record("host", Duration::from_millis(3), Ok(vec![("items", 4)]));
        assert!(r.healthy());
        let host = &r.collectors()[0];
        assert_eq!((host.state.as_str(), host.counts["items"]), ("ok", 4));
        assert_eq!(r.collectors()[1].state, "disabled");
        r.set_detail("network", "proc: why".into());
        assert_eq!(r.collectors()[1].detail, "proc: why");
    }

    #[test]
    fn drops_accumulate() {
        let r = Registry::default();
        r.add_drops("process.vanished", 2);
        r.add_drops("process.vanished", 3);
        r.add_drops("process.unreadable", 0);
        assert_eq!(
            r.drops().into_iter().collect::<Vec<_>>(),
            [("process.vanished".to_string(), 5)]
        );
    }
}
