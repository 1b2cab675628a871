//! The peer of the process agent cycle: processes, `connects-to` relations and their
//! gauges as intake topology and metrics, the way the daemon sent them before the process
//! agent protocol (instance `ecs-processes`, one component a process, gauges tagged with
//! the URNs). Kept here only to be measured against.

use std::rc::Rc;

use node_daemon::forward::encode::intake::{Component, Elements, Gauge, Link};
use node_daemon::model::Snapshot;
use serde_json::json;

pub fn process_elements(snapshot: &Snapshot) -> Elements {
    let mut e = Elements::default();
    for p in &snapshot.processes {
        e.components.push(Component {
            external_id: p.urn.clone(),
            type_name: "process",
            data: json!({
                "name": p.name, "pid": p.pid, "ppid": p.ppid, "createTime": p.create_time_ms,
                "exe": p.exe, "command": {"args": p.cmdline}, "user": p.user,
                "containerId": p.container_id, "ecsTaskArn": p.ecs_task_arn,
                "layer": "Processes", "domain": "ECS",
            }),
        });
    }
    for r in &snapshot.relations {
        e.relations.push(Link {
            source: r.source.clone(),
            target: r.target.clone(),
            type_name: r.kind.to_string(),
        });
    }
    e
}

/// The process and relation gauges of one cycle.
pub fn gauges(snapshot: &Snapshot, now_s: u64) -> Vec<Gauge<'_>> {
    let h = snapshot.host.hostname.as_str();
    let mut out = Vec::new();
    let mut gauge = |name: &'static str, value: f64, tags: &Rc<[String]>| {
        out.push(Gauge {
            name,
            timestamp: now_s,
            value,
            hostname: h,
            tags: tags.clone(),
        });
    };
    for p in &snapshot.processes {
        let tags: Rc<[String]> = Rc::new([
            p.urn.clone(),
            format!("pid:{}", p.pid),
            format!("process_name:{}", p.name),
        ]);
        gauge("process.cpu.pct", p.cpu_pct.unwrap_or(0.0), &tags);
        gauge("process.mem.rss", p.rss_bytes as f64, &tags);
        gauge("process.threads", p.threads as f64, &tags);
        if let Some(fds) = p.open_fds {
            gauge("process.open_fds", fds as f64, &tags);
        }
        if let (Some(r), Some(w)) = (p.read_bytes, p.write_bytes) {
            gauge("process.io.read_bytes", r as f64, &tags);
            gauge("process.io.write_bytes", w as f64, &tags);
        }
    }
    for r in &snapshot.relations {
        let Some(t) = &r.traffic else { continue };
        let tags: Rc<[String]> = Rc::new([
            format!("relation:{}->{}", r.source, r.target),
            format!("source:{}", r.source),
            format!("target:{}", r.target),
        ]);
        gauge("connection.count", t.connections as f64, &tags);
        let values = [
            ("connection.bytes_sent", t.bytes_sent.map(|v| v as f64)),
            (
                "connection.bytes_received",
                t.bytes_received.map(|v| v as f64),
            ),
            ("connection.bytes_sent_per_sec", t.bytes_sent_per_sec),
            (
                "connection.bytes_received_per_sec",
                t.bytes_received_per_sec,
            ),
        ];
        for (name, value) in values {
            if let Some(v) = value {
                gauge(name, v, &tags);
            }
        }
    }
    out
}
