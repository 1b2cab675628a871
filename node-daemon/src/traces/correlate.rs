//! PID correlation: which host process, container and ECS task produced each span.
//!
//! Sources, in order: the StackState Java client's `span.pid` meta; the `process_id`
//! metric that Python and Node clients put on root spans; the TCP peer of the request as
//! the sidecar found it in the host /proc; the `Datadog-Container-ID` header (container
//! only). The pid found on any span of a trace applies to the whole trace. The process
//! create time always comes from /proc, so spans merge with `urn:process:/<host>:<pid>:<ms>`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sts_proto::daemon::v1::{ClientInfo, Span, Trace};

use crate::collect::container::ContainerStore;
use crate::collect::kernel::Kernel;
use crate::collect::process::container_id;
use crate::model::EcsContainer;

pub const META_HOSTNAME: &str = "span.hostname";
pub const META_PID: &str = "span.pid";
pub const META_STARTTIME: &str = "span.starttime";
pub const META_SERVICE_URN: &str = "span.serviceURN";
pub const META_SERVICE_INSTANCE_URN: &str = "span.serviceInstanceURN";
pub const META_PROCESS_URN: &str = "span.processURN";
pub const META_CONTAINER_ID: &str = "container.id";
pub const META_TASK_ARN: &str = "ecs.task_arn";
pub const META_TASK_FAMILY: &str = "ecs.task_family";
pub const META_TASK_REVISION: &str = "ecs.task_revision";
pub const META_CONTAINER_NAME: &str = "ecs.container_name";
pub const METRIC_PROCESS_ID: &str = "process_id";

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

pub struct Correlator {
    hostname: String,
    kernel: Option<Kernel>,
    containers: Option<ContainerStore>,
    pids: HashMap<u32, ProcFacts>,
}

impl Correlator {
    pub fn new(hostname: &str, containers: Option<ContainerStore>) -> Self {
        Self {
            hostname: hostname.to_string(),
            kernel: Kernel::read().ok(),
            containers,
            pids: HashMap::new(),
        }
    }

    /// Fills the correlation meta of every span of `trace`.
    pub fn correlate(&mut self, client: &ClientInfo, trace: &mut Trace) {
        let pid = trace_pid(&trace.spans).or((client.peer_pid != 0).then_some(client.peer_pid));
        let facts = pid.and_then(|pid| self.facts(pid));
        let container_id = facts
            .as_ref()
            .and_then(|f| f.container_id.clone())
            .or_else(|| (!client.container_id.is_empty()).then(|| client.container_id.clone()));
        let ecs = container_id.as_deref().and_then(|id| self.ecs_of(id));
        let process = pid.zip(facts.map(|f| f.create_time_ms));

        // What is the same for every span of the trace, formatted once per trace.
        let mut common: Vec<(&'static str, String)> = Vec::with_capacity(9);
        common.push((META_HOSTNAME, self.hostname.clone()));
        if let Some((pid, ms)) = process {
            common.push((META_PID, pid.to_string()));
            common.push((META_STARTTIME, ms.to_string()));
            common.push((
                META_PROCESS_URN,
                crate::model::process_urn(&self.hostname, pid, ms),
            ));
        }
        if let Some(id) = container_id {
            common.push((META_CONTAINER_ID, id));
        }
        if let Some(ecs) = ecs {
            common.push((META_TASK_ARN, ecs.task_arn));
            let optional = [
                (META_TASK_FAMILY, ecs.family),
                (META_TASK_REVISION, ecs.revision),
                (META_CONTAINER_NAME, ecs.container_name),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    common.push((key, value));
                }
            }
        }

        // The service URNs, formatted again only when the service changes from one span to
        // the next (the spans of a trace mostly share one): (service, URN, instance URN).
        let mut service: Option<(String, String, Option<String>)> = None;
        for span in &mut trace.spans {
            if !matches!(&service, Some((name, ..)) if *name == span.service) {
                service = Some((
                    span.service.clone(),
                    format!("urn:service:/{}", span.service),
                    process.map(|(pid, ms)| {
                        format!(
                            "urn:service-instance:/{}:/{}:{pid}:{ms}",
                            span.service, self.hostname
                        )
                    }),
                ));
            }
            let (_, service_urn, instance_urn) = service.as_ref().expect("set above");
            let meta = &mut span.meta;
            // One table growth at most for all the entries added.
            meta.reserve(common.len() + 1 + usize::from(instance_urn.is_some()));
            for (key, value) in &common {
                meta.insert((*key).to_string(), value.clone());
            }
            meta.insert(META_SERVICE_URN.into(), service_urn.clone());
            if let Some(urn) = instance_urn {
                meta.insert(META_SERVICE_INSTANCE_URN.into(), urn.clone());
            }
        }
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

    fn ecs_of(&self, container_id: &str) -> Option<EcsContainer> {
        self.containers.as_ref()?.get(container_id)?.ecs
    }
}

/// The client pid a trace names: `span.pid` meta, else the `process_id` metric.
fn trace_pid(spans: &[Span]) -> Option<u32> {
    let from_meta = spans
        .iter()
        .find_map(|s| s.meta.get(META_PID).and_then(|p| p.trim().parse().ok()));
    from_meta.or_else(|| {
        spans.iter().find_map(|s| {
            let v = *s.metrics.get(METRIC_PROCESS_ID)?;
            (v >= 1.0 && v <= f64::from(u32::MAX) && v.fract() == 0.0).then_some(v as u32)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            spans: vec![root, span("web")],
        };
        Correlator::new("h1", None).correlate(&ClientInfo::default(), &mut trace);
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
    fn service_urns_follow_each_spans_service() {
        let me = std::process::id();
        let mut root = span("web");
        root.metrics.insert(METRIC_PROCESS_ID.into(), f64::from(me));
        let mut trace = Trace {
            spans: vec![root, span("db"), span("db"), span("web"), span("")],
        };
        Correlator::new("h1", None).correlate(&ClientInfo::default(), &mut trace);
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
            assert_eq!(s.meta.len(), 6, "{:?}", s.meta);
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
        let mut trace = Trace { spans: vec![s] };
        Correlator::new("h1", None).correlate(&client, &mut trace);
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
            spans: vec![span("x")],
        };
        Correlator::new("h1", None).correlate(&client, &mut trace);
        let meta = &trace.spans[0].meta;
        assert_eq!(meta[META_PID], me.to_string());
        assert_eq!(
            meta[META_CONTAINER_ID], "abc",
            "header used when the process is on the host"
        );
    }

    #[test]
    fn unknown_pid_gets_no_process_identity() {
        let mut s = span("x");
        s.metrics.insert(METRIC_PROCESS_ID.into(), 4_194_305.0);
        let mut trace = Trace { spans: vec![s] };
        Correlator::new("h1", None).correlate(&ClientInfo::default(), &mut trace);
        assert!(!trace.spans[0].meta.contains_key(META_PID));
        assert_eq!(trace.spans[0].meta[META_HOSTNAME], "h1");
    }
}
