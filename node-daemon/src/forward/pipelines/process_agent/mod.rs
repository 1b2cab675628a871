//! The process agent protocol: processes and containers (`CollectorProc`, or
//! `CollectorCommands` with the changes between full messages when the receiver offers
//! `incremental-topology`) to `/api/v1/collector`, connections (`CollectorConnections`)
//! to `/api/v1/connections`, each message framed by [`envelope`]. The receiver builds the
//! host, process and container components and the connections between processes only
//! from these messages.

pub(crate) mod connections;
pub(crate) mod envelope;
pub(crate) mod features;
mod pipeline;
pub(crate) mod processes;
mod wire;

use std::collections::HashSet;

/// Sets of the host's own pids and container ids, with a fast hasher.
type Set<T> = HashSet<T, foldhash::fast::RandomState>;
use std::time::Duration;

use prost::Message;
use sts_proto::process_agent::v1 as pb;

use crate::model::{Process, Snapshot};
use connections::{ConnectionCounts, ConnectionTracker, Naming};
pub use envelope::{CompressError, EnvelopeWriter, MessageType};
pub use features::Features;
pub(crate) use pipeline::{remove_obsolete_queue, Pipeline, SPEC};

pub(crate) const COLLECTOR_PATH: &str = "/api/v1/collector";
pub(crate) const CONNECTIONS_PATH: &str = "/api/v1/connections";
/// At most this many processes, containers, commands or connections in one message.
pub(crate) const MAX_PER_MESSAGE: usize = 100;
/// Connections followed between messages at most (beyond: counted, not reported).
pub(crate) const MAX_TRACKED_CONNECTIONS: usize = 262_144;
/// The version the receiver is told (`sts-processagentversion`).
pub(crate) const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The agent's settings, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// How often messages go (the agent's process and connection checks: 30 s).
    pub interval: Duration,
    /// Processes younger than this are not reported.
    pub short_lived_processes: Duration,
    /// Connections seen for less than this are not reported.
    pub short_lived_connections: Duration,
    /// A full `CollectorProc` at least this often when sending changes.
    pub full_every: Duration,
}

impl From<crate::config::ProcessAgentConfig> for Settings {
    fn from(c: crate::config::ProcessAgentConfig) -> Self {
        Self {
            interval: c.interval,
            short_lived_processes: c.short_lived_processes,
            short_lived_connections: c.short_lived_connections,
            ..Self::default()
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            short_lived_processes: Duration::from_secs(60),
            short_lived_connections: Duration::from_secs(60),
            full_every: Duration::from_secs(60),
        }
    }
}

/// One message, framed and compressed, and where it goes.
#[derive(Debug)]
pub struct Outgoing {
    pub path: &'static str,
    pub kind: MessageType,
    pub body: Vec<u8>,
}

/// What the last messages held and left out, for status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub processes: u64,
    pub(crate) short_lived_processes: u64,
    pub(crate) containers: u64,
    pub(crate) commands: u64,
    pub connections: ConnectionCounts,
    /// Connections the tracker had no room for, since start.
    pub(crate) untracked_total: u64,
    pub(crate) full_messages: u64,
    pub(crate) incremental_messages: u64,
}

pub struct ProcessAgent {
    settings: Settings,
    features: Features,
    writer: EnvelopeWriter,
    tracker: ConnectionTracker,
    last_sent_ms: Option<u64>,
    last_full_ms: Option<u64>,
    /// What the receiver holds since the last full message (for the changes).
    known_processes: Set<(u32, u64)>,
    known_containers: Set<String>,
    group_id: i32,
    counts: Counts,
    /// The protobuf of the message being framed (kept from message to message).
    scratch: Vec<u8>,
    /// The encoded connections of a cycle (kept from cycle to cycle).
    connections: Vec<u8>,
}

impl ProcessAgent {
    pub fn new(settings: Settings, features: Features) -> Result<Self, CompressError> {
        Ok(Self {
            settings,
            features,
            writer: EnvelopeWriter::new()?,
            tracker: ConnectionTracker::new(MAX_TRACKED_CONNECTIONS),
            last_sent_ms: None,
            last_full_ms: None,
            known_processes: Set::default(),
            known_containers: Set::default(),
            group_id: 0,
            counts: Counts::default(),
            scratch: Vec::new(),
            connections: Vec::new(),
        })
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Takes one collection cycle (every cycle: the connections seen between messages
    /// count); returns the messages when the interval has passed. `cycle` is the
    /// collection interval: a message due within half of it goes now.
    pub fn cycle(
        &mut self,
        snapshot: &Snapshot,
        now_ms: u64,
        cycle: Duration,
    ) -> Result<Vec<Outgoing>, CompressError> {
        self.counts.untracked_total += self.tracker.observe(&snapshot.connections, now_ms);
        let slack = cycle.as_millis() as u64 / 2;
        if let Some(last) = self.last_sent_ms {
            if now_ms.saturating_sub(last) + slack < self.settings.interval.as_millis() as u64 {
                return Ok(Vec::new());
            }
        }
        self.last_sent_ms = Some(now_ms);
        self.group_id = self.group_id.wrapping_add(1) & i32::MAX;
        let min_age = self.settings.short_lived_processes.as_millis() as u64;
        let reported: Vec<&Process> = snapshot
            .processes
            .iter()
            .filter(|p| now_ms.saturating_sub(p.create_time_ms) >= min_age)
            .collect();
        self.counts.processes = reported.len() as u64;
        self.counts.short_lived_processes = (snapshot.processes.len() - reported.len()) as u64;
        self.counts.containers = snapshot.containers.len() as u64;

        let pids: Set<(u32, u64)> = reported.iter().map(|p| (p.pid, p.create_time_ms)).collect();
        let mut out = self.process_messages(snapshot, &reported, &pids, now_ms, slack)?;
        let mut counts = ConnectionCounts::default();
        let cluster = snapshot
            .host
            .ecs
            .as_ref()
            .and_then(|e| e.cluster.as_deref());
        let naming = Naming::new(&snapshot.host.hostname, cluster, &snapshot.translations);
        // Each connection encoded once, one after the other; `ends[i]` is where the i-th
        // ends.
        let mut encoded = std::mem::take(&mut self.connections);
        encoded.clear();
        let ends = self.tracker.take(
            now_ms,
            self.settings.short_lived_connections.as_millis() as u64,
            |pid, created| pids.contains(&(pid, created)),
            &mut counts,
            |c, deltas| {
                naming.encode(&mut encoded, c, deltas);
                encoded.len()
            },
        );
        self.counts.connections = counts;
        let host = processes::host(snapshot);
        let groups = group_count(ends.len());
        for group in 0..groups {
            let first = group * MAX_PER_MESSAGE;
            let last = ((group + 1) * MAX_PER_MESSAGE).min(ends.len());
            let buf = &mut self.scratch;
            buf.clear();
            wire::string(buf, 2, &snapshot.host.hostname);
            let mut start = if first == 0 { 0 } else { ends[first - 1] };
            for &end in &ends[first..last] {
                wire::bytes(buf, 3, &encoded[start..end]);
                start = end;
            }
            wire::message(buf, 4, |buf| host.encode_raw(buf));
            wire::int(buf, 5, i64::from(self.group_id));
            wire::int(buf, 6, groups as i64);
            wire::string(buf, 7, cluster.unwrap_or_default());
            wire::int(buf, 8, self.settings.interval.as_millis() as i64);
            out.push(self.seal(CONNECTIONS_PATH, MessageType::CollectorConnections, now_ms)?);
        }
        self.connections = encoded;
        self.known_processes = pids;
        Ok(out)
    }

    fn frame(
        &mut self,
        path: &'static str,
        kind: MessageType,
        message: &impl Message,
        now_ms: u64,
    ) -> Result<Outgoing, CompressError> {
        self.scratch.clear();
        message
            .encode(&mut self.scratch)
            .expect("a Vec grows as needed");
        self.seal(path, kind, now_ms)
    }

    /// The envelope around the protobuf in `scratch`.
    fn seal(
        &mut self,
        path: &'static str,
        kind: MessageType,
        now_ms: u64,
    ) -> Result<Outgoing, CompressError> {
        let body = self.writer.write(kind, now_ms as i64, &self.scratch)?;
        Ok(Outgoing { path, kind, body })
    }

    /// A full `CollectorProc` when due (or when the receiver takes no changes), else
    /// `CollectorCommands` with what changed since the receiver's last full view.
    fn process_messages(
        &mut self,
        snapshot: &Snapshot,
        reported: &[&Process],
        now_processes: &Set<(u32, u64)>,
        now_ms: u64,
        slack: u64,
    ) -> Result<Vec<Outgoing>, CompressError> {
        let full_due = match self.last_full_ms {
            None => true,
            Some(last) => {
                now_ms.saturating_sub(last) + slack >= self.settings.full_every.as_millis() as u64
            }
        };
        let host = processes::host(snapshot);
        let info = processes::system_info(snapshot);
        let procs: Vec<pb::Process> = reported.iter().map(|p| processes::process(p)).collect();
        let containers: Vec<pb::Container> = snapshot
            .containers
            .iter()
            .map(|c| processes::container(c, &host))
            .collect();
        let now_containers: Set<String> = snapshot
            .containers
            .iter()
            .map(|c| c.info.id.clone())
            .collect();

        let mut out = Vec::new();
        if full_due || !self.features.incremental_topology() {
            self.last_full_ms = Some(now_ms);
            self.counts.full_messages += 1;
            self.counts.commands = 0;
            let groups = group_count(procs.len()).max(group_count(containers.len()));
            let proc_chunks = split(procs, groups);
            let container_chunks = split(containers, groups);
            for (p, c) in proc_chunks.into_iter().zip(container_chunks) {
                let message = pb::CollectorProc {
                    host_name: snapshot.host.hostname.clone(),
                    processes: p,
                    host: Some(host.clone()),
                    info: Some(info.clone()),
                    group_id: self.group_id,
                    group_size: groups as i32,
                    containers: c,
                };
                out.push(self.frame(
                    COLLECTOR_PATH,
                    MessageType::CollectorProc,
                    &message,
                    now_ms,
                )?);
            }
        } else {
            self.counts.incremental_messages += 1;
            let commands = changes(
                procs,
                containers,
                &self.known_processes,
                &self.known_containers,
                now_processes,
                &now_containers,
            );
            self.counts.commands = commands.len() as u64;
            let groups = group_count(commands.len());
            for chunk in split(commands, groups) {
                let message = pb::CollectorCommands {
                    host_name: snapshot.host.hostname.clone(),
                    commands: chunk,
                    host: Some(host.clone()),
                    info: Some(info.clone()),
                    group_id: self.group_id,
                    group_size: groups as i32,
                };
                out.push(self.frame(
                    COLLECTOR_PATH,
                    MessageType::CollectorCommands,
                    &message,
                    now_ms,
                )?);
            }
        }

        self.known_containers = now_containers;
        Ok(out)
    }
}

/// The commands that take the receiver from what it knows to what is now: new ones are
/// updated, known ones get their metrics, gone ones are deleted.
fn changes(
    procs: Vec<pb::Process>,
    containers: Vec<pb::Container>,
    known_processes: &Set<(u32, u64)>,
    known_containers: &Set<String>,
    now_processes: &Set<(u32, u64)>,
    now_containers: &Set<String>,
) -> Vec<pb::CollectorCommand> {
    use pb::collector_command::Command as C;
    let mut commands = Vec::with_capacity(procs.len() + containers.len());
    for p in procs {
        let id = (p.pid as u32, p.create_time as u64);
        commands.push(if known_processes.contains(&id) {
            C::UpdateProcessMetrics(p)
        } else {
            C::UpdateProcess(p)
        });
    }
    for &(pid, created) in known_processes.difference(now_processes) {
        commands.push(C::DeleteProcess(processes::process_identity(pid, created)));
    }
    for c in containers {
        commands.push(if known_containers.contains(&c.id) {
            C::UpdateContainerMetrics(c)
        } else {
            C::UpdateContainer(c)
        });
    }
    for id in known_containers.difference(now_containers) {
        commands.push(C::DeleteContainer(processes::container_identity(id)));
    }
    commands
        .into_iter()
        .map(|c| pb::CollectorCommand { command: Some(c) })
        .collect()
}

/// Messages needed for `items` (at least one, so the host is heard from every time).
fn group_count(items: usize) -> usize {
    items.div_ceil(MAX_PER_MESSAGE).max(1)
}

/// `items` in `groups` chunks of at most [`MAX_PER_MESSAGE`] (the last ones may be empty).
fn split<T>(items: Vec<T>, groups: usize) -> Vec<Vec<T>> {
    let mut items = items.into_iter();
    (0..groups)
        .map(|_| items.by_ref().take(MAX_PER_MESSAGE).collect())
        .collect()
}

/// The headers of every message (`sts-api-key` is added when sending).
pub fn headers(hostname: &str) -> Vec<(String, String)> {
    [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "x-zip"),
        ("sts-hostname", hostname),
        ("sts-processagentversion", AGENT_VERSION),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What the pipeline's status shows besides the sink's counters.
pub(crate) fn status_values(counts: &Counts) -> Vec<(&'static str, u64)> {
    let c = &counts.connections;
    vec![
        ("processes", counts.processes),
        ("short_lived_processes", counts.short_lived_processes),
        ("containers", counts.containers),
        ("commands", counts.commands),
        ("connections", c.reported),
        ("short_lived_connections", c.short_lived),
        ("connections_of_unreported_processes", c.unreported_process),
        ("full_messages", counts.full_messages),
        ("incremental_messages", counts.incremental_messages),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{process, snapshot};
    use pb::collector_command::Command as C;

    /// Counts by message type of a list of messages.
    fn by_kind(messages: &[Outgoing]) -> std::collections::HashMap<u8, usize> {
        let mut m = std::collections::HashMap::new();
        for o in messages {
            *m.entry(o.kind as u8).or_default() += 1;
        }
        m
    }

    const MINUTE: u64 = 60_000;
    const CYCLE: Duration = Duration::from_secs(10);

    fn decoded(m: &Outgoing) -> Vec<u8> {
        assert_eq!(&m.body[..3], &[3, 2, m.kind as u8]);
        zstd::bulk::decompress(&m.body[envelope::HEADER_LEN..], 1 << 24).unwrap()
    }

    fn procs(out: &[Outgoing]) -> Vec<pb::CollectorProc> {
        out.iter()
            .filter(|m| m.kind == MessageType::CollectorProc)
            .map(|m| pb::CollectorProc::decode(decoded(m).as_slice()).unwrap())
            .collect()
    }

    fn commands(out: &[Outgoing]) -> Vec<C> {
        out.iter()
            .filter(|m| m.kind == MessageType::CollectorCommands)
            .flat_map(|m| {
                pb::CollectorCommands::decode(decoded(m).as_slice())
                    .unwrap()
                    .commands
            })
            .filter_map(|c| c.command)
            .collect()
    }

    /// Processes created at 1 ms; `young` more created at `young_at`.
    fn processes(old: u32, young: u32, young_at: u64) -> Vec<Process> {
        let mut all: Vec<Process> = (1..=old).map(|pid| process(pid, None)).collect();
        all.extend((0..young).map(|i| Process {
            create_time_ms: young_at,
            ..process(10_000 + i, None)
        }));
        all
    }

    #[test]
    fn a_cycle_goes_when_due_in_groups_of_at_most_100_without_the_young() {
        let mut agent = ProcessAgent::new(Settings::default(), Features::default()).unwrap();
        let now = 10 * MINUTE;
        let snap = snapshot(processes(250, 7, now - 59_000));
        let out = agent.cycle(&snap, now, CYCLE).unwrap();
        let groups = procs(&out);
        let sizes: Vec<usize> = groups.iter().map(|g| g.processes.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(groups
            .iter()
            .all(|g| g.group_size == 3 && g.group_id == groups[0].group_id));
        assert_eq!(by_kind(&out)[&22], 1, "one connections message, empty");
        let c = agent.counts();
        assert_eq!((c.processes, c.short_lived_processes), (250, 7));
        // Not due 10 s later; due 25 s later (within half a collection cycle of 30 s).
        assert!(agent.cycle(&snap, now + 10_000, CYCLE).unwrap().is_empty());
        let next = agent.cycle(&snap, now + 25_000, CYCLE).unwrap();
        assert_eq!(procs(&next).len(), 3);
        assert_ne!(procs(&next)[0].group_id, groups[0].group_id);
    }

    #[test]
    fn with_incremental_topology_changes_go_between_full_messages() {
        let features = Features::default();
        features.set(br#"{"incremental-topology": true}"#);
        let mut agent = ProcessAgent::new(Settings::default(), features).unwrap();
        let now = 10 * MINUTE;
        let out = agent
            .cycle(&snapshot(processes(3, 0, 0)), now, CYCLE)
            .unwrap();
        assert_eq!(procs(&out)[0].processes.len(), 3, "a full message first");
        // 30 s on: pid 3 is gone, pid 4 is new.
        let mut now_procs = processes(2, 0, 0);
        now_procs.push(process(4, None));
        let out = agent
            .cycle(&snapshot(now_procs.clone()), now + 30_000, CYCLE)
            .unwrap();
        assert!(procs(&out).is_empty());
        let changes = commands(&out);
        let has = |f: &dyn Fn(&C) -> bool| changes.iter().any(f);
        assert!(has(
            &|c| matches!(c, C::UpdateProcessMetrics(p) if p.pid == 1)
        ));
        assert!(has(&|c| matches!(c, C::UpdateProcess(p) if p.pid == 4)));
        assert!(has(&|c| matches!(c, C::DeleteProcess(p) if p.pid == 3)));
        assert_eq!(changes.len(), 4);
        // A minute after the first full message, another.
        let out = agent
            .cycle(&snapshot(now_procs), now + 60_000, CYCLE)
            .unwrap();
        assert_eq!(procs(&out)[0].processes.len(), 3);
        assert_eq!(agent.counts().full_messages, 2);
    }
}
