//! One cycle as OTLP metrics, named as the OpenTelemetry semantic conventions (and the
//! collector's host metrics receiver) name them: the host's `system.*`, each process's
//! `process.*` and each running container's `container.*`, every one under its own
//! resource. Utilizations are ratios (0-1); counters are cumulative sums from the boot,
//! the process's start or the container's.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::known::Known;
use super::resource::{self, string};
use crate::clock::epoch_nanos;
use crate::model::{Container, Process, Snapshot};

/// The metrics of one resource, as they are added.
struct Metrics {
    list: Vec<Metric>,
    now_ns: u64,
    /// The start of the resource's counters.
    start_ns: u64,
}

impl Metrics {
    fn new(now_ns: u64, start_ns: u64) -> Self {
        Self {
            list: Vec::new(),
            now_ns,
            start_ns,
        }
    }

    fn point(&self, value: f64, attributes: Vec<KeyValue>, start_ns: u64) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: start_ns,
            time_unix_nano: self.now_ns,
            value: Some(Value::AsDouble(value)),
            ..NumberDataPoint::default()
        }
    }

    /// A gauge of one point a value of `points`, each with its attributes.
    fn gauge(&mut self, name: &str, unit: &str, points: Vec<(f64, Vec<KeyValue>)>) {
        let data_points = points
            .into_iter()
            .map(|(v, a)| self.point(v, a, 0))
            .collect();
        self.push(name, unit, Data::Gauge(Gauge { data_points }));
    }

    /// A cumulative, monotonic sum.
    fn counter(&mut self, name: &str, unit: &str, points: Vec<(f64, Vec<KeyValue>)>) {
        let start = self.start_ns;
        let data_points = points
            .into_iter()
            .map(|(v, a)| self.point(v, a, start))
            .collect();
        let sum = Sum {
            data_points,
            aggregation_temporality: AggregationTemporality::Cumulative.into(),
            is_monotonic: true,
        };
        self.push(name, unit, Data::Sum(sum));
    }

    fn push(&mut self, name: &str, unit: &str, data: Data) {
        self.list.push(Metric {
            name: name.to_string(),
            unit: unit.to_string(),
            data: Some(data),
            ..Metric::default()
        });
    }

    fn into_resource(self, attributes: Vec<KeyValue>) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes,
                dropped_attributes_count: 0,
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics: self.list,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

/// The daemon, as the instrumentation scope of what it measures.
pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "node-daemon".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

fn no_attributes(value: f64) -> Vec<(f64, Vec<KeyValue>)> {
    vec![(value, Vec::new())]
}

fn ms_to_ns(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

/// The request of one cycle at `now_ns`.
pub(super) fn request(
    snapshot: &Snapshot,
    known: &Known,
    now_ns: u64,
) -> ExportMetricsServiceRequest {
    let mut resource_metrics = vec![host(snapshot, known, now_ns)];
    let ecs = snapshot.host.ecs.as_ref();
    for process in &snapshot.processes {
        let mut attributes = known.host.clone();
        attributes.extend(
            known
                .process(process.pid, None)
                .unwrap_or_default()
                .iter()
                .cloned(),
        );
        resource_metrics.push(
            self::process(process, snapshot.host.cpu_count, now_ns).into_resource(attributes),
        );
    }
    for container in &snapshot.containers {
        if let Some(metrics) = self::container(container, now_ns) {
            let mut attributes = known.host.clone();
            attributes.extend(resource::container(&container.info, ecs));
            resource_metrics.push(metrics.into_resource(attributes));
        }
    }
    ExportMetricsServiceRequest { resource_metrics }
}

fn host(snapshot: &Snapshot, known: &Known, now_ns: u64) -> ResourceMetrics {
    let host = &snapshot.host;
    let t = &host.telemetry;
    let mut m = Metrics::new(now_ns, ms_to_ns(host.boot_time_ms));
    let mode = |mode: &str| vec![string("cpu.mode", mode)];
    m.gauge(
        "system.cpu.utilization",
        "1",
        vec![
            (t.cpu.user_pct / 100.0, mode("user")),
            (t.cpu.system_pct / 100.0, mode("system")),
            (t.cpu.iowait_pct / 100.0, mode("wait")),
            (t.cpu.idle_pct / 100.0, mode("idle")),
        ],
    );
    m.gauge(
        "system.cpu.logical.count",
        "{cpu}",
        no_attributes(f64::from(host.cpu_count)),
    );
    m.gauge(
        "system.cpu.load_average.1m",
        "{thread}",
        no_attributes(t.load.load1),
    );
    m.gauge(
        "system.cpu.load_average.5m",
        "{thread}",
        no_attributes(t.load.load5),
    );
    m.gauge(
        "system.cpu.load_average.15m",
        "{thread}",
        no_attributes(t.load.load15),
    );
    let memory = &t.memory;
    let state = |state: &str| vec![string("system.memory.state", state)];
    m.gauge(
        "system.memory.usage",
        "By",
        vec![
            (
                memory.total_bytes.saturating_sub(memory.free_bytes) as f64,
                state("used"),
            ),
            (memory.free_bytes as f64, state("free")),
        ],
    );
    m.gauge(
        "system.memory.limit",
        "By",
        no_attributes(memory.total_bytes as f64),
    );
    m.gauge(
        "system.linux.memory.available",
        "By",
        no_attributes(memory.available_bytes as f64),
    );
    let direction = |key: &str, name: &str, value: &str| {
        vec![string(key, name), string("network.io.direction", value)]
    };
    let mut network = Vec::new();
    for n in &t.network {
        let name = n.interface.as_str();
        network.push((
            n.rx_bytes as f64,
            direction("network.interface.name", name, "receive"),
        ));
        network.push((
            n.tx_bytes as f64,
            direction("network.interface.name", name, "transmit"),
        ));
    }
    m.counter("system.network.io", "By", network);
    let disk = |device: &str, value: &str| {
        vec![
            string("system.device", device),
            string("disk.io.direction", value),
        ]
    };
    let mut disks = Vec::new();
    for d in &t.disks {
        disks.push((d.read_bytes as f64, disk(&d.device, "read")));
        disks.push((d.write_bytes as f64, disk(&d.device, "write")));
    }
    m.counter("system.disk.io", "By", disks);
    m.into_resource(known.host.clone())
}

fn process(process: &Process, cpu_count: u32, now_ns: u64) -> Metrics {
    let mut m = Metrics::new(now_ns, ms_to_ns(process.create_time_ms));
    let mode = |mode: &str| vec![string("cpu.mode", mode)];
    m.counter(
        "process.cpu.time",
        "s",
        vec![
            (process.cpu_user_seconds, mode("user")),
            (process.cpu_system_seconds, mode("system")),
        ],
    );
    if let Some(pct) = process.cpu_pct {
        let ratio = pct / 100.0 / f64::from(cpu_count.max(1));
        m.gauge("process.cpu.utilization", "1", no_attributes(ratio));
    }
    m.gauge(
        "process.memory.usage",
        "By",
        no_attributes(process.rss_bytes as f64),
    );
    m.gauge(
        "process.memory.virtual",
        "By",
        no_attributes(process.vms_bytes as f64),
    );
    m.gauge(
        "process.thread.count",
        "{thread}",
        no_attributes(process.threads as f64),
    );
    if let Some(fds) = process.open_fds {
        m.gauge(
            "process.unix.file_descriptor.count",
            "{file_descriptor}",
            no_attributes(fds as f64),
        );
    }
    if let (Some(read), Some(write)) = (process.read_bytes, process.write_bytes) {
        let direction = |d: &str| vec![string("disk.io.direction", d)];
        m.counter(
            "process.disk.io",
            "By",
            vec![
                (read as f64, direction("read")),
                (write as f64, direction("write")),
            ],
        );
    }
    m
}

/// A running container's, None without telemetry.
fn container(container: &Container, now_ns: u64) -> Option<Metrics> {
    let t = container.telemetry.as_ref()?;
    let started = container
        .info
        .started_at
        .as_deref()
        .and_then(epoch_nanos)
        .unwrap_or(0);
    let mut m = Metrics::new(now_ns, started);
    let mode = |mode: &str| vec![string("cpu.mode", mode)];
    if let Some(seconds) = t.cpu_usage_seconds {
        m.counter("container.cpu.time", "s", no_attributes(seconds));
    }
    if let (Some(user), Some(system)) = (t.cpu_user_pct, t.cpu_system_pct) {
        m.gauge(
            "container.cpu.usage",
            "{cpu}",
            vec![
                (user / 100.0, mode("user")),
                (system / 100.0, mode("system")),
            ],
        );
    }
    if let Some(bytes) = t.memory_usage_bytes {
        m.gauge("container.memory.usage", "By", no_attributes(bytes as f64));
    }
    if let Some(bytes) = t.memory_rss_bytes {
        m.gauge("container.memory.rss", "By", no_attributes(bytes as f64));
    }
    if let Some(bytes) = t.memory_limit_bytes {
        m.gauge("container.memory.limit", "By", no_attributes(bytes as f64));
    }
    let pair = |key: &str, a: (&str, Option<u64>), b: (&str, Option<u64>)| {
        let mut points = Vec::new();
        for (direction, value) in [a, b] {
            if let Some(value) = value {
                points.push((value as f64, vec![string(key, direction)]));
            }
        }
        points
    };
    let network = pair(
        "network.io.direction",
        ("receive", t.network_rx_bytes),
        ("transmit", t.network_tx_bytes),
    );
    if !network.is_empty() {
        m.counter("container.network.io", "By", network);
    }
    let disk = pair(
        "disk.io.direction",
        ("read", t.block_read_bytes),
        ("write", t.block_write_bytes),
    );
    if !disk.is_empty() {
        m.counter("container.disk.io", "By", disk);
    }
    Some(m)
}
