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

    /// A gauge of one point without attributes.
    fn value(&mut self, name: &str, unit: &str, value: f64) {
        self.gauge(name, unit, vec![(value, Vec::new())]);
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

/// The one attribute `key` = `value` of a point.
fn by(key: &str, value: &str) -> Vec<KeyValue> {
    vec![string(key, value)]
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
    let mode = |mode| by("cpu.mode", mode);
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
    m.value(
        "system.cpu.logical.count",
        "{cpu}",
        f64::from(host.cpu_count),
    );
    m.value("system.cpu.load_average.1m", "{thread}", t.load.load1);
    m.value("system.cpu.load_average.5m", "{thread}", t.load.load5);
    m.value("system.cpu.load_average.15m", "{thread}", t.load.load15);
    let memory = &t.memory;
    let used = memory.total_bytes.saturating_sub(memory.free_bytes);
    m.gauge(
        "system.memory.usage",
        "By",
        vec![
            (used as f64, by("system.memory.state", "used")),
            (memory.free_bytes as f64, by("system.memory.state", "free")),
        ],
    );
    m.value("system.memory.limit", "By", memory.total_bytes as f64);
    m.value(
        "system.linux.memory.available",
        "By",
        memory.available_bytes as f64,
    );
    let mut network = Vec::new();
    for n in &t.network {
        for (bytes, direction) in [(n.rx_bytes, "receive"), (n.tx_bytes, "transmit")] {
            let attributes = vec![
                string("network.interface.name", n.interface.as_str()),
                string("network.io.direction", direction),
            ];
            network.push((bytes as f64, attributes));
        }
    }
    m.counter("system.network.io", "By", network);
    let mut disks = Vec::new();
    for d in &t.disks {
        for (bytes, direction) in [(d.read_bytes, "read"), (d.write_bytes, "write")] {
            let attributes = vec![
                string("system.device", d.device.as_str()),
                string("disk.io.direction", direction),
            ];
            disks.push((bytes as f64, attributes));
        }
    }
    m.counter("system.disk.io", "By", disks);
    m.into_resource(known.host.clone())
}

fn process(process: &Process, cpu_count: u32, now_ns: u64) -> Metrics {
    let mut m = Metrics::new(now_ns, ms_to_ns(process.create_time_ms));
    m.counter(
        "process.cpu.time",
        "s",
        vec![
            (process.cpu_user_seconds, by("cpu.mode", "user")),
            (process.cpu_system_seconds, by("cpu.mode", "system")),
        ],
    );
    if let Some(pct) = process.cpu_pct {
        let ratio = pct / 100.0 / f64::from(cpu_count.max(1));
        m.value("process.cpu.utilization", "1", ratio);
    }
    m.value("process.memory.usage", "By", process.rss_bytes as f64);
    m.value("process.memory.virtual", "By", process.vms_bytes as f64);
    m.value("process.thread.count", "{thread}", process.threads as f64);
    if let Some(fds) = process.open_fds {
        let name = "process.unix.file_descriptor.count";
        m.value(name, "{file_descriptor}", fds as f64);
    }
    if let (Some(read), Some(write)) = (process.read_bytes, process.write_bytes) {
        m.counter(
            "process.disk.io",
            "By",
            directions(
                "disk.io.direction",
                [("read", Some(read)), ("write", Some(write))],
            ),
        );
    }
    m
}

/// The points of the directions that have a value, each with its `key` attribute.
fn directions(key: &str, values: [(&str, Option<u64>); 2]) -> Vec<(f64, Vec<KeyValue>)> {
    values
        .into_iter()
        .filter_map(|(direction, value)| Some((value? as f64, by(key, direction))))
        .collect()
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
    if let Some(seconds) = t.cpu_usage_seconds {
        m.counter("container.cpu.time", "s", vec![(seconds, Vec::new())]);
    }
    if let (Some(user), Some(system)) = (t.cpu_user_pct, t.cpu_system_pct) {
        m.gauge(
            "container.cpu.usage",
            "{cpu}",
            vec![
                (user / 100.0, by("cpu.mode", "user")),
                (system / 100.0, by("cpu.mode", "system")),
            ],
        );
    }
    let memory = [
        ("container.memory.usage", t.memory_usage_bytes),
        ("container.memory.rss", t.memory_rss_bytes),
        ("container.memory.limit", t.memory_limit_bytes),
    ];
    for (name, bytes) in memory {
        if let Some(bytes) = bytes {
            m.value(name, "By", bytes as f64);
        }
    }
    let network = directions(
        "network.io.direction",
        [
            ("receive", t.network_rx_bytes),
            ("transmit", t.network_tx_bytes),
        ],
    );
    if !network.is_empty() {
        m.counter("container.network.io", "By", network);
    }
    let disk = directions(
        "disk.io.direction",
        [("read", t.block_read_bytes), ("write", t.block_write_bytes)],
    );
    if !disk.is_empty() {
        m.counter("container.disk.io", "By", disk);
    }
    Some(m)
}
