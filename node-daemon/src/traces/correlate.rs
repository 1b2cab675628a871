//! PID correlation: which host process, container and ECS task produced each span.
//!
//! Sources, in order: the StackState Java client's `span.pid` meta; the `process_id`
//! metric that Python and Node clients put on root spans; the TCP peer of the request as
//! the sidecar found it in the host /proc; the `Datadog-Container-ID` header (container
//! only). The pid found on any span of a trace applies to the whole trace. The process
//! create time comes from /proc, so spans merge with `urn:process:/<host>:<pid>:<ms>`;
//! for the peer process, from what the sidecar read of it when it connected (its start
//! and cgroup), so that a client that sent its spans and exited keeps its identity, and a
//! pid reused since then is not taken for it.
//!
//! Spans are not decoded: what correlation adds is a run of `meta` entries appended to each
//! span's bytes (see [`CorrelatedSpan`]). The entries are the same for every span of one
//! process and service, so they are made once per batch for each (process, service) and
//! shared by reference.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::wire::{BatchView, ServiceKind, SpanView};
use crate::collect::container::ContainerStore;
use crate::collect::kernel::Kernel;
use crate::collect::process::container_id;
use crate::model::EcsContainer;
use crate::span::{
    put_meta, CorrelatedSpan, META_CONTAINER_ID, META_CONTAINER_NAME, META_HOSTNAME, META_PID,
    META_PROCESS_URN, META_SERVICE_INSTANCE_URN, META_SERVICE_NAME, META_SERVICE_TYPE,
    META_SERVICE_URN, META_STARTTIME, META_TASK_ARN, META_TASK_FAMILY, META_TASK_REVISION,
};
use sts_proto::daemon::v1::ClientInfo;

/// How long what /proc said about a pid is reused.
const PROC_TTL: Duration = Duration::from_secs(30);
/// Pids remembered at most; the cache is cleared when it grows past this.
const MAX_CACHED_PIDS: usize = 65_536;

#[derive(Debug, Clone)]
struct ProcFacts {
    create_time_ms: u64,
    container_id: Option<String>,
    read_at: Instant,
}

/// What the spans of one client process get, for one batch.
struct Process {
    /// The pid the trace named (or the peer's), the peer's start when it is that pid and
    /// the sidecar read it, and the container header of its payload.
    pid: Option<u32>,
    peer_start: Option<u64>,
    header_container: String,
    /// pid and create time, when /proc knows the pid.
    identity: Option<(u32, u64)>,
    /// The entries every span of the process gets.
    entries: Vec<u8>,
    /// Those and the service's entries, by service and how its spans are typed.
    by_service: HashMap<Vec<u8>, Vec<(Vec<u8>, Bytes)>>,
}

pub struct Correlator {
    hostname: String,
    kernel: Option<Kernel>,
    containers: Option<ContainerStore>,
    pids: HashMap<u32, ProcFacts>,
    /// The processes of the batch being correlated.
    batch: Vec<Process>,
}

impl Correlator {
    pub fn new(hostname: &str, containers: Option<ContainerStore>) -> Self {
        Self {
            hostname: hostname.to_string(),
            kernel: Kernel::read().ok(),
            containers,
            pids: HashMap::new(),
            batch: Vec::new(),
        }
    }

    /// Correlates every span of `batch`, in batch order, into `out`.
    pub fn correlate(&mut self, batch: &BatchView, out: &mut Vec<CorrelatedSpan>) {
        self.batch.clear();
        out.reserve(batch.spans.len());
        for payload in &batch.payloads {
            let client = &payload.client;
            for trace in &batch.traces[payload.traces.clone()] {
                let spans = &batch.spans[trace.spans.clone()];
                let pid = trace_pid(spans).or((client.peer_pid != 0).then_some(client.peer_pid));
                let process = self.process(pid, client);
                let common = batch.bytes.slice(trace.common.clone());
                // Spans of a trace mostly share one service: the last one's entries again.
                let mut last: Option<(&[u8], Typed<'_>, Bytes)> = None;
                for span in spans {
                    let service = &batch.bytes[span.service.clone()];
                    let typed = Typed::of(&span.kind, &batch.bytes);
                    let extra = match &last {
                        Some((name, t, extra)) if *name == service && *t == typed => extra.clone(),
                        _ => {
                            let extra = self.service_entries(process, service, typed);
                            last = Some((service, typed, extra.clone()));
                            extra
                        }
                    };
                    out.push(CorrelatedSpan {
                        common: common.clone(),
                        raw: batch.bytes.slice(span.bytes.clone()),
                        extra,
                        trace_id: span.trace_id,
                        start: span.start,
                        duration: span.duration,
                    });
                }
            }
        }
    }

    /// The batch's entry for a process, made on first use.
    fn process(&mut self, pid: Option<u32>, client: &ClientInfo) -> usize {
        let header_container = client.container_id.as_str();
        // The sidecar's facts name the peer process as it was when it connected.
        let peer_start = (pid == Some(client.peer_pid) && client.peer_start_ticks != 0)
            .then_some(client.peer_start_ticks);
        if let Some(i) = self.batch.iter().position(|p| {
            p.pid == pid && p.peer_start == peer_start && p.header_container == header_container
        }) {
            return i;
        }
        let facts = match peer_start {
            Some(ticks) => self.peer_facts(ticks, &client.peer_cgroup),
            None => pid.and_then(|pid| self.facts(pid)),
        };
        let container_id = facts
            .as_ref()
            .and_then(|f| f.container_id.clone())
            .or_else(|| (!header_container.is_empty()).then(|| header_container.to_string()));
        let ecs = container_id.as_deref().and_then(|id| self.ecs_of(id));
        let identity = pid.zip(facts.map(|f| f.create_time_ms));

        let mut entries = Vec::with_capacity(256);
        put_meta(&mut entries, META_HOSTNAME, &self.hostname);
        if let Some((pid, ms)) = identity {
            put_meta(&mut entries, META_PID, &pid.to_string());
            put_meta(&mut entries, META_STARTTIME, &ms.to_string());
            let urn = crate::model::process_urn(&self.hostname, pid, ms);
            put_meta(&mut entries, META_PROCESS_URN, &urn);
        }
        if let Some(id) = &container_id {
            put_meta(&mut entries, META_CONTAINER_ID, id);
        }
        if let Some(ecs) = ecs {
            put_meta(&mut entries, META_TASK_ARN, &ecs.task_arn);
            let optional = [
                (META_TASK_FAMILY, ecs.family),
                (META_TASK_REVISION, ecs.revision),
                (META_CONTAINER_NAME, ecs.container_name),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    put_meta(&mut entries, key, &value);
                }
            }
        }
        self.batch.push(Process {
            pid,
            peer_start,
            header_container: header_container.to_string(),
            identity,
            entries,
            by_service: HashMap::new(),
        });
        self.batch.len() - 1
    }

    /// What a span of `service` from the batch's process `process` gets: the process's
    /// entries and, as the StackState trace agent's interpreter sets them, the service's.
    fn service_entries(&mut self, process: usize, service: &[u8], typed: Typed<'_>) -> Bytes {
        let hostname = &self.hostname;
        let process = &mut self.batch[process];
        let cached = process.by_service.get(service).and_then(|variants| {
            variants
                .iter()
                .find(|(key, _)| typed.is(key))
                .map(|(_, extra)| extra.clone())
        });
        if let Some(extra) = cached {
            return extra;
        }
        // Checked to be UTF-8 when the batch was read.
        let name = String::from_utf8_lossy(service);
        let mut extra = process.entries.clone();
        // A span that named its service keeps its own service fields.
        if typed != Typed::Named {
            put_meta(&mut extra, META_SERVICE_NAME, &name);
            put_meta(
                &mut extra,
                META_SERVICE_URN,
                &format!("urn:service:/{name}"),
            );
            if let Some((pid, ms)) = process.identity {
                let urn = format!("urn:service-instance:/{name}:/{hostname}:{pid}:{ms}");
                put_meta(&mut extra, META_SERVICE_INSTANCE_URN, &urn);
            }
        }
        let service_type = match typed {
            Typed::Database(db) => Some(String::from_utf8_lossy(db)),
            // The interpreter types a span by its kind once it knows host and pid.
            Typed::Kind { jvm } if process.identity.is_some() => {
                Some((if jvm { "java" } else { "service" }).into())
            }
            _ => None,
        };
        if let Some(service_type) = service_type {
            put_meta(&mut extra, META_SERVICE_TYPE, &service_type);
        }
        let extra = Bytes::from(extra);
        process
            .by_service
            .entry(service.to_vec())
            .or_default()
            .push((typed.key(), extra.clone()));
        extra
    }

    fn facts(&mut self, pid: u32) -> Option<ProcFacts> {
        if let Some(f) = self
            .pids
            .get(&pid)
            .filter(|f| f.read_at.elapsed() < PROC_TTL)
        {
            return Some(f.clone());
        }
        let kernel = self.kernel?;
        let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
        let stat = crate::collect::process::parse_stat(&stat)?;
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let facts = ProcFacts {
            create_time_ms: kernel.create_time_ms(stat.starttime),
            container_id: container_id(&cgroup).map(String::from),
            read_at: Instant::now(),
        };
        if self.pids.len() >= MAX_CACHED_PIDS {
            self.pids.clear();
        }
        self.pids.insert(pid, facts.clone());
        Some(facts)
    }

    /// A process as the sidecar read it at connect time: start in clock ticks since boot,
    /// and its cgroup file.
    fn peer_facts(&self, start_ticks: u64, cgroup: &str) -> Option<ProcFacts> {
        Some(ProcFacts {
            create_time_ms: self.kernel?.create_time_ms(start_ticks),
            container_id: container_id(cgroup).map(String::from),
            read_at: Instant::now(),
        })
    }

    fn ecs_of(&self, container_id: &str) -> Option<EcsContainer> {
        self.containers.as_ref()?.get(container_id)?.ecs
    }
}

/// A span's [`ServiceKind`] with the `db.type` as bytes of its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Typed<'a> {
    Named,
    Untyped,
    Kind { jvm: bool },
    Database(&'a [u8]),
}

impl<'a> Typed<'a> {
    fn of(kind: &ServiceKind, bytes: &'a [u8]) -> Self {
        match kind {
            ServiceKind::Named => Typed::Named,
            ServiceKind::Untyped => Typed::Untyped,
            ServiceKind::Kind { jvm } => Typed::Kind { jvm: *jvm },
            ServiceKind::Database(range) => Typed::Database(&bytes[range.clone()]),
        }
    }

    fn tag(self) -> u8 {
        match self {
            Typed::Named => 0,
            Typed::Untyped => 1,
            Typed::Kind { jvm } => 2 + u8::from(jvm),
            Typed::Database(_) => 4,
        }
    }

    /// As kept beyond the batch: the tag, then the `db.type`.
    fn key(self) -> Vec<u8> {
        let mut key = vec![self.tag()];
        if let Typed::Database(db) = self {
            key.extend_from_slice(db);
        }
        key
    }

    fn is(self, key: &[u8]) -> bool {
        match (self, key) {
            (Typed::Database(db), [tag, rest @ ..]) => *tag == self.tag() && db == rest,
            (_, [tag]) => *tag == self.tag(),
            _ => false,
        }
    }
}

/// The client pid a trace names: `span.pid` meta, else the `process_id` metric.
fn trace_pid(spans: &[SpanView]) -> Option<u32> {
    spans
        .iter()
        .find_map(|s| s.meta_pid)
        .or_else(|| spans.iter().find_map(|s| s.metric_pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::METRIC_PROCESS_ID;
    use prost::Message;
    use sts_proto::daemon::v1::{ClientInfo, Span, SpanBatch, Trace, TracePayload};

    /// Correlates one trace as the relay would, and decodes the result.
    fn correlate(correlator: &mut Correlator, client: &ClientInfo, trace: &mut Trace) {
        let batch = SpanBatch {
            payloads: vec![TracePayload {
                client: Some(client.clone()),
                traces: vec![trace.clone()],
            }],
            ..SpanBatch::default()
        };
        let view = BatchView::parse(Bytes::from(batch.encode_to_vec())).unwrap();
        let mut out = Vec::new();
        correlator.correlate(&view, &mut out);
        trace.spans = out.iter().map(|s| s.decode().unwrap()).collect();
    }

    fn span(service: &str) -> Span {
        Span {
            service: service.into(),
            ..Span::default()
        }
    }

    fn own_create_time() -> u64 {
        let stat = std::fs::read("/proc/self/stat").unwrap();
        let stat = crate::collect::process::parse_stat(&stat).unwrap();
        Kernel::read().unwrap().create_time_ms(stat.starttime)
    }

    #[test]
    fn process_id_metric_applies_to_the_whole_trace() {
        let me = std::process::id();
        let mut root = span("web");
        root.metrics.insert(METRIC_PROCESS_ID.into(), f64::from(me));
        let mut trace = Trace {
            common: None,
            spans: vec![root, span("web")],
        };
        correlate(
            &mut Correlator::new("h1", None),
            &ClientInfo::default(),
            &mut trace,
        );
        let ms = own_create_time();
        for s in &trace.spans {
            assert_eq!(s.meta[META_PID], me.to_string());
            assert_eq!(s.meta[META_STARTTIME], ms.to_string());
            assert_eq!(s.meta[META_HOSTNAME], "h1");
            assert_eq!(s.meta[META_SERVICE_URN], "urn:service:/web");
            assert_eq!(
                s.meta[META_SERVICE_INSTANCE_URN],
                format!("urn:service-instance:/web:/h1:{me}:{ms}")
            );
            assert_eq!(
                s.meta[META_PROCESS_URN],
                format!("urn:process:/h1:{me}:{ms}")
            );
        }
    }

    #[test]
    fn a_common_pid_and_service_name_every_span_of_the_trace() {
        let me = std::process::id();
        let mut common = span("shop");
        common
            .metrics
            .insert(METRIC_PROCESS_ID.into(), f64::from(me));
        common
            .meta
            .insert("deployment.environment".into(), "prod".into());
        let mut trace = Trace {
            common: Some(common),
            spans: vec![Span::default(), span("db")],
        };
        correlate(
            &mut Correlator::new("h1", None),
            &ClientInfo::default(),
            &mut trace,
        );
        let services: Vec<&str> = trace.spans.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(services, ["shop", "db"]);
        for s in &trace.spans {
            assert_eq!(s.meta[META_PID], me.to_string());
            assert_eq!(s.meta["deployment.environment"], "prod");
            assert_eq!(
                s.meta[META_SERVICE_URN],
                format!("urn:service:/{}", s.service)
            );
        }
    }

    #[test]
    fn service_urns_follow_each_spans_service() {
        let me = std::process::id();
        let mut root = span("web");
        root.metrics.insert(METRIC_PROCESS_ID.into(), f64::from(me));
        let mut trace = Trace {
            common: None,
            spans: vec![root, span("db"), span("db"), span("web"), span("")],
        };
        correlate(
            &mut Correlator::new("h1", None),
            &ClientInfo::default(),
            &mut trace,
        );
        let ms = own_create_time();
        for s in &trace.spans {
            assert_eq!(
                s.meta[META_SERVICE_URN],
                format!("urn:service:/{}", s.service)
            );
            assert_eq!(
                s.meta[META_SERVICE_INSTANCE_URN],
                format!("urn:service-instance:/{}:/h1:{me}:{ms}", s.service)
            );
            assert_eq!(s.meta[META_SERVICE_NAME], s.service);
            assert_eq!(s.meta.len(), 7, "{:?}", s.meta);
        }
    }

    #[test]
    fn java_meta_wins_over_metric_and_peer() {
        let me = std::process::id();
        let mut s = span("java-app");
        s.meta.insert(META_PID.into(), me.to_string());
        s.metrics.insert(METRIC_PROCESS_ID.into(), 1.0);
        let client = ClientInfo {
            peer_pid: 1,
            ..ClientInfo::default()
        };
        let mut trace = Trace {
            common: None,
            spans: vec![s],
        };
        correlate(&mut Correlator::new("h1", None), &client, &mut trace);
        assert_eq!(trace.spans[0].meta[META_PID], me.to_string());
    }

    #[test]
    fn peer_pid_and_container_header_as_fallbacks() {
        let me = std::process::id();
        let client = ClientInfo {
            peer_pid: me,
            container_id: "abc".into(),
            ..ClientInfo::default()
        };
        let mut trace = Trace {
            common: None,
            spans: vec![span("x")],
        };
        correlate(&mut Correlator::new("h1", None), &client, &mut trace);
        let meta = &trace.spans[0].meta;
        assert_eq!(meta[META_PID], me.to_string());
        assert_eq!(
            meta[META_CONTAINER_ID], "abc",
            "header used when the process is on the host"
        );
    }

    #[test]
    fn a_peer_that_exited_keeps_the_identity_the_sidecar_read_at_connect() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let client = ClientInfo {
            // No such process: pids stay below 2^22.
            peer_pid: 4_200_000,
            peer_start_ticks: 123_456,
            peer_cgroup: format!("0::/system.slice/docker-{id}.scope\n"),
            ..ClientInfo::default()
        };
        let mut trace = Trace {
            common: None,
            spans: vec![span("gone")],
        };
        correlate(&mut Correlator::new("h1", None), &client, &mut trace);
        let meta = &trace.spans[0].meta;
        let ms = Kernel::read().unwrap().create_time_ms(123_456);
        assert_eq!(meta[META_PID], "4200000");
        assert_eq!(meta[META_STARTTIME], ms.to_string());
        assert_eq!(
            meta[META_PROCESS_URN],
            format!("urn:process:/h1:4200000:{ms}")
        );
        assert_eq!(meta[META_CONTAINER_ID], id);
    }

    #[test]
    fn a_reused_pid_is_named_by_the_start_the_sidecar_saw() {
        let me = std::process::id();
        let client = ClientInfo {
            peer_pid: me,
            peer_start_ticks: 7,
            ..ClientInfo::default()
        };
        let mut trace = Trace {
            common: None,
            spans: vec![span("x")],
        };
        correlate(&mut Correlator::new("h1", None), &client, &mut trace);
        let ms = Kernel::read().unwrap().create_time_ms(7);
        assert_ne!(ms, own_create_time());
        assert_eq!(trace.spans[0].meta[META_STARTTIME], ms.to_string());
    }

    #[test]
    fn service_name_and_type_as_the_stackstate_interpreter_sets_them() {
        let me = std::process::id();
        let with = |meta: &[(&str, &str)], kind: &str| {
            let mut s = span("svc");
            s.r#type = kind.into();
            s.meta = meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            s
        };
        let mut trace = Trace {
            common: None,
            spans: vec![
                with(&[], "web"),
                with(&[("span.kind", "server"), ("language", "jvm")], "web"),
                with(&[("span.kind", "client")], "http"),
                with(&[("span.kind", "client"), ("db.type", "postgresql")], "sql"),
                with(&[("db.type", "mysql")], "web"),
                with(
                    &[
                        (META_SERVICE_URN, "urn:service:/mine"),
                        ("span.kind", "server"),
                    ],
                    "web",
                ),
            ],
        };
        let client = ClientInfo {
            peer_pid: me,
            ..ClientInfo::default()
        };
        correlate(&mut Correlator::new("h1", None), &client, &mut trace);
        let got: Vec<(Option<&str>, Option<&str>, Option<&str>)> = trace
            .spans
            .iter()
            .map(|s| {
                let m = &s.meta;
                let get = |k: &str| m.get(k).map(String::as_str);
                (
                    get(META_SERVICE_NAME),
                    get(META_SERVICE_TYPE),
                    get(META_SERVICE_URN),
                )
            })
            .collect();
        let urn = Some("urn:service:/svc");
        assert_eq!(
            got,
            vec![
                (Some("svc"), None, urn),
                (Some("svc"), Some("java"), urn),
                (Some("svc"), Some("service"), urn),
                (Some("svc"), Some("postgresql"), urn),
                (Some("svc"), None, urn),
                (None, None, Some("urn:service:/mine")),
            ]
        );
        let named = &trace.spans[5].meta;
        assert!(
            !named.contains_key(META_SERVICE_INSTANCE_URN),
            "passes through"
        );
        assert_eq!(named[META_PID], me.to_string(), "still correlated");
    }

    #[test]
    fn unknown_pid_gets_no_process_identity() {
        let mut s = span("x");
        s.metrics.insert(METRIC_PROCESS_ID.into(), 4_194_305.0);
        let mut trace = Trace {
            common: None,
            spans: vec![s],
        };
        correlate(
            &mut Correlator::new("h1", None),
            &ClientInfo::default(),
            &mut trace,
        );
        assert!(!trace.spans[0].meta.contains_key(META_PID));
        assert_eq!(trace.spans[0].meta[META_HOSTNAME], "h1");
    }

    #[test]
    fn a_batch_of_several_clients_shares_entries_per_process_and_service() {
        let me = std::process::id();
        let mut root = span("web");
        root.metrics.insert(METRIC_PROCESS_ID.into(), f64::from(me));
        let python = TracePayload {
            client: Some(ClientInfo::default()),
            traces: vec![
                Trace {
                    common: None,
                    spans: vec![root.clone(), span("web"), span("db")],
                },
                Trace {
                    common: None,
                    spans: vec![root, span("db")],
                },
            ],
        };
        let mut liar = span("x");
        liar.meta.insert(META_HOSTNAME.into(), "client-said".into());
        let other = TracePayload {
            client: Some(ClientInfo {
                container_id: "abc".into(),
                ..ClientInfo::default()
            }),
            traces: vec![Trace {
                common: None,
                spans: vec![liar],
            }],
        };
        let batch = SpanBatch {
            payloads: vec![python, other],
            ..SpanBatch::default()
        };
        let view = BatchView::parse(Bytes::from(batch.encode_to_vec())).unwrap();
        let mut out = Vec::new();
        Correlator::new("h1", None).correlate(&view, &mut out);
        assert_eq!(out.len(), 6);
        let spans: Vec<Span> = out.iter().map(|s| s.decode().unwrap()).collect();
        for s in &spans[..5] {
            assert_eq!(s.meta[META_PID], me.to_string());
            assert_eq!(
                s.meta[META_SERVICE_URN],
                format!("urn:service:/{}", s.service)
            );
        }
        // One set of entries per (process, service), shared by its spans.
        let same = |a: usize, b: usize| out[a].extra.as_ptr() == out[b].extra.as_ptr();
        assert!(same(0, 1) && same(0, 3) && same(2, 4));
        assert!(!same(0, 2));
        // The other client: no pid, its container header, and the daemon's hostname.
        let x = &spans[5];
        assert!(!x.meta.contains_key(META_PID));
        assert_eq!(x.meta[META_CONTAINER_ID], "abc");
        assert_eq!(x.meta[META_HOSTNAME], "h1", "the daemon's value wins");
        assert_eq!(x.meta[META_SERVICE_URN], "urn:service:/x");
        assert!(!x.meta.contains_key(META_SERVICE_INSTANCE_URN));
    }
}
