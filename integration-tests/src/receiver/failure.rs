//! Programmable failures: what the receiver does instead of answering normally, for
//! which endpoint, and for how long.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::captured::Endpoint;

/// One way of failing. JSON: `{"mode": "status", "code": 503}`, `{"mode": "hang"}`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FailureMode {
    /// Global: the listener is closed (connection refused) while the step lasts by time;
    /// a counted step resets each new connection on accept instead (a refused attempt
    /// never reaches a closed listener, so it could not be counted). Open connections
    /// are dropped. For one endpoint: its requests are dropped without an answer as soon
    /// as the request head arrives.
    Refuse,
    /// Answer with this status. 429 and 503 carry `Retry-After` (default 1 s); the body
    /// is `body` or a short text naming the injected status.
    Status {
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_s: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Read the request, never answer (until the receiver stops).
    Hang,
    /// Read the request, send the headers and part of the declared body, then close.
    CloseMidBody,
    /// Read part of the request body, then close without answering.
    CloseMidRequest,
    /// Global: wait this long before serving each new connection (before the TLS
    /// handshake). For one endpoint: wait this long before answering its requests.
    SlowAccept { ms: u64 },
}

impl FailureMode {
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after_s: None,
            body: None,
        }
    }

    pub fn slow_accept(delay: Duration) -> Self {
        Self::SlowAccept {
            ms: delay.as_millis() as u64,
        }
    }
}

/// How long a step lasts. JSON: `"forever"`, `{"requests": 3}`, `{"for_ms": 2000}`,
/// `{"until_unix_ms": 1700000000000}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lasting {
    Forever,
    /// The next N matching requests (connections, for the accept-time modes).
    Requests(u64),
    /// From when the step becomes active.
    ForMs(u64),
    /// Until this wall-clock time.
    UntilUnixMs(u64),
}

impl Lasting {
    pub fn for_duration(d: Duration) -> Self {
        Self::ForMs(d.as_millis() as u64)
    }

    pub fn until(t: SystemTime) -> Self {
        Self::UntilUnixMs(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureStep {
    #[serde(flatten)]
    pub mode: FailureMode,
    pub lasting: Lasting,
}

impl FailureStep {
    pub fn new(mode: FailureMode, lasting: Lasting) -> Self {
        Self { mode, lasting }
    }
}

/// Which requests a schedule applies to. JSON: `"all"` or an endpoint name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    All,
    Intake,
    Collector,
    Connections,
    Features,
    Traces,
    Unknown,
}

impl From<Endpoint> for Scope {
    fn from(e: Endpoint) -> Self {
        match e {
            Endpoint::Intake => Self::Intake,
            Endpoint::Collector => Self::Collector,
            Endpoint::Connections => Self::Connections,
            Endpoint::Features => Self::Features,
            Endpoint::Traces => Self::Traces,
            Endpoint::Unknown => Self::Unknown,
        }
    }
}

/// A step with its remaining count or its deadline once active.
#[derive(Debug, Clone)]
struct Active {
    step: FailureStep,
    remaining: Option<u64>,
    deadline: Option<Instant>,
    started: bool,
}

impl Active {
    fn new(step: FailureStep) -> Self {
        Self {
            remaining: match step.lasting {
                Lasting::Requests(n) => Some(n),
                _ => None,
            },
            step,
            deadline: None,
            started: false,
        }
    }

    /// Starts the clock of a `ForMs` step; tells whether the step is still in force.
    fn live(&mut self, now: Instant) -> bool {
        if !self.started {
            self.started = true;
            self.deadline = match self.step.lasting {
                Lasting::ForMs(ms) => Some(now + Duration::from_millis(ms)),
                Lasting::UntilUnixMs(ms) => {
                    let wall = UNIX_EPOCH + Duration::from_millis(ms);
                    let left = wall.duration_since(SystemTime::now()).unwrap_or_default();
                    Some(now + left)
                }
                _ => None,
            };
        }
        self.remaining != Some(0) && self.deadline.map_or(true, |d| now < d)
    }
}

/// What to do with a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnAction {
    Serve,
    Reset,
    Delay(Duration),
}

/// The listener's state wanted by the global schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerState {
    Open,
    /// Closed until this instant (None: until the schedule changes).
    Closed(Option<Instant>),
}

/// Per-scope queues of steps; the head of each queue is in force.
#[derive(Debug, Default)]
pub struct Schedule {
    queues: HashMap<Scope, VecDeque<Active>>,
}

impl Schedule {
    /// Replaces the steps of `scope`.
    pub fn set(&mut self, scope: Scope, steps: Vec<FailureStep>) {
        self.queues
            .insert(scope, steps.into_iter().map(Active::new).collect());
    }

    /// Appends steps after those of `scope`.
    pub fn append(&mut self, scope: Scope, steps: Vec<FailureStep>) {
        self.queues
            .entry(scope)
            .or_default()
            .extend(steps.into_iter().map(Active::new));
    }

    pub fn clear(&mut self) {
        self.queues.clear();
    }

    /// The steps still pending, head first, per scope.
    pub fn pending(&mut self, now: Instant) -> Vec<(Scope, Vec<FailureStep>)> {
        let mut scopes: Vec<Scope> = self.queues.keys().copied().collect();
        scopes.sort_by_key(|s| format!("{s:?}"));
        scopes
            .into_iter()
            .filter_map(|s| {
                self.head(s, now);
                let steps: Vec<FailureStep> = self
                    .queues
                    .get(&s)?
                    .iter()
                    .map(|a| a.step.clone())
                    .collect();
                (!steps.is_empty()).then_some((s, steps))
            })
            .collect()
    }

    /// The step in force for `scope`, after dropping the finished ones.
    fn head(&mut self, scope: Scope, now: Instant) -> Option<&mut Active> {
        let queue = self.queues.get_mut(&scope)?;
        while let Some(front) = queue.front_mut() {
            if front.live(now) {
                break;
            }
            queue.pop_front();
        }
        queue.front_mut()
    }

    fn consume(active: &mut Active) {
        if let Some(n) = active.remaining.as_mut() {
            *n = n.saturating_sub(1);
        }
    }

    pub fn listener_state(&mut self, now: Instant) -> ListenerState {
        match self.head(Scope::All, now) {
            Some(a) if a.step.mode == FailureMode::Refuse && a.remaining.is_none() => {
                ListenerState::Closed(a.deadline)
            }
            _ => ListenerState::Open,
        }
    }

    /// Decides for a new connection; consumes a counted global `Refuse`/`SlowAccept`.
    pub fn on_connection(&mut self, now: Instant) -> ConnAction {
        let Some(active) = self.head(Scope::All, now) else {
            return ConnAction::Serve;
        };
        let action = match active.step.mode {
            FailureMode::Refuse => ConnAction::Reset,
            FailureMode::SlowAccept { ms } => ConnAction::Delay(Duration::from_millis(ms)),
            _ => return ConnAction::Serve,
        };
        Self::consume(active);
        action
    }

    /// The failure for a request to `endpoint`, if any; consumes a counted step. The
    /// endpoint's own schedule wins over the global one. A global `SlowAccept` acts on
    /// connections only.
    pub fn on_request(&mut self, endpoint: Endpoint, now: Instant) -> Option<FailureMode> {
        if let Some(active) = self.head(endpoint.into(), now) {
            Self::consume(active);
            return Some(active.step.mode.clone());
        }
        let active = self.head(Scope::All, now)?;
        if matches!(active.step.mode, FailureMode::SlowAccept { .. }) {
            return None;
        }
        Self::consume(active);
        Some(active.step.mode.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(mode: FailureMode, lasting: Lasting) -> FailureStep {
        FailureStep::new(mode, lasting)
    }

    #[test]
    fn counted_steps_run_in_order_then_normal() {
        let mut s = Schedule::default();
        let now = Instant::now();
        s.set(
            Scope::Traces,
            vec![
                step(FailureMode::status(500), Lasting::Requests(2)),
                step(FailureMode::Hang, Lasting::Requests(1)),
            ],
        );
        let seen: Vec<_> = (0..4)
            .map(|_| s.on_request(Endpoint::Traces, now))
            .collect();
        assert_eq!(
            seen,
            vec![
                Some(FailureMode::status(500)),
                Some(FailureMode::status(500)),
                Some(FailureMode::Hang),
                None
            ]
        );
        assert_eq!(s.on_request(Endpoint::Intake, now), None);
    }

    #[test]
    fn timed_step_starts_when_active_and_expires() {
        let mut s = Schedule::default();
        let t0 = Instant::now();
        s.set(
            Scope::All,
            vec![
                step(FailureMode::status(503), Lasting::Requests(1)),
                step(FailureMode::Refuse, Lasting::ForMs(1000)),
            ],
        );
        assert_eq!(s.listener_state(t0), ListenerState::Open);
        assert_eq!(
            s.on_request(Endpoint::Intake, t0),
            Some(FailureMode::status(503))
        );
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            s.listener_state(t1),
            ListenerState::Closed(Some(t1 + Duration::from_secs(1)))
        );
        assert_eq!(
            s.listener_state(t1 + Duration::from_millis(999)),
            ListenerState::Closed(Some(t1 + Duration::from_secs(1)))
        );
        assert_eq!(
            s.listener_state(t1 + Duration::from_secs(1)),
            ListenerState::Open
        );
        assert!(s.pending(t1 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn counted_refuse_resets_connections_and_endpoint_wins() {
        let mut s = Schedule::default();
        let now = Instant::now();
        s.set(
            Scope::All,
            vec![step(FailureMode::Refuse, Lasting::Requests(1))],
        );
        s.set(
            Scope::Collector,
            vec![step(FailureMode::status(429), Lasting::Forever)],
        );
        assert_eq!(s.listener_state(now), ListenerState::Open);
        assert_eq!(
            s.on_request(Endpoint::Collector, now),
            Some(FailureMode::status(429))
        );
        assert_eq!(s.on_connection(now), ConnAction::Reset);
        assert_eq!(s.on_connection(now), ConnAction::Serve);
        assert_eq!(
            s.on_request(Endpoint::Collector, now),
            Some(FailureMode::status(429))
        );
    }

    #[test]
    fn global_slow_accept_delays_connections_only() {
        let mut s = Schedule::default();
        let now = Instant::now();
        s.set(
            Scope::All,
            vec![step(
                FailureMode::slow_accept(Duration::from_millis(300)),
                Lasting::Forever,
            )],
        );
        assert_eq!(
            s.on_connection(now),
            ConnAction::Delay(Duration::from_millis(300))
        );
        assert_eq!(s.on_request(Endpoint::Traces, now), None);
    }

    #[test]
    fn json_forms() {
        let step: FailureStep = serde_json::from_str(
            r#"{"mode":"status","code":429,"retry_after_s":3,"lasting":{"requests":2}}"#,
        )
        .unwrap();
        assert_eq!(
            step.mode,
            FailureMode::Status {
                code: 429,
                retry_after_s: Some(3),
                body: None
            }
        );
        assert_eq!(step.lasting, Lasting::Requests(2));
        let hang: FailureStep =
            serde_json::from_str(r#"{"mode":"hang","lasting":"forever"}"#).unwrap();
        assert_eq!(hang.mode, FailureMode::Hang);
        let scope: Scope = serde_json::from_str(r#""traces""#).unwrap();
        assert_eq!(scope, Scope::Traces);
    }
}
