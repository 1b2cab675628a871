//! Renders a status response for people (a short report) and machines (JSON).

use std::fmt::Write as _;

use serde_json::{json, Value};
use sts_proto::daemon::v1::GetStatusResponse;

pub fn to_json(status: &GetStatusResponse) -> Value {
    let collectors: Vec<Value> = status
        .collectors
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "state": c.state,
                "last_run_unix_ms": c.last_run_unix_ms,
                "last_duration_us": c.last_duration_us,
                "last_error": c.last_error,
                "detail": c.detail,
                "counts": sorted(&c.counts),
            })
        })
        .collect();
    let sidecars: Vec<Value> = status
        .sidecars
        .iter()
        .map(|s| {
            json!({
                "sidecar_id": s.sidecar_id,
                "addr": s.addr,
                "task_arn": s.task_arn,
                "connected": s.connected,
                "spans_received": s.spans_received,
                "spans_per_second": s.spans_per_second,
                "dropped_spans": s.dropped_spans,
                "last_seen_unix_ms": s.last_seen_unix_ms,
            })
        })
        .collect();
    json!({
        "version": status.version,
        "hostname": status.hostname,
        "uptime_seconds": status.uptime_seconds,
        "healthy": status.healthy,
        "collectors": collectors,
        "drops": sorted(&status.drops),
        "config": sorted(&status.config),
        "ecs": status.ecs,
        "trace_relay": status.trace_relay,
        "spans_received_total": status.spans_received_total,
        "spans_duplicate_total": status.spans_duplicate_total,
        "relay_refused_total": status.relay_refused_total,
        "sidecars": sidecars,
    })
}

fn sorted<V: serde::Serialize + Clone>(map: &std::collections::HashMap<String, V>) -> Value {
    let ordered: std::collections::BTreeMap<_, _> = map.iter().collect();
    serde_json::to_value(ordered).unwrap_or(Value::Null)
}

pub fn to_text(status: &GetStatusResponse) -> String {
    let mut out = String::new();
    let health = if status.healthy {
        "healthy"
    } else {
        "UNHEALTHY"
    };
    let _ = writeln!(
        out,
        "node-daemon {} on {}, up {}, {health}",
        status.version,
        status.hostname,
        human_duration(status.uptime_seconds)
    );
    let _ = writeln!(out, "\nCollectors:");
    let now_ms = crate::clock::unix_ms_now();
    let width = status
        .collectors
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    for c in &status.collectors {
        let last = if c.last_run_unix_ms == 0 {
            "never run".to_string()
        } else {
            let ago = (now_ms - c.last_run_unix_ms).max(0) as u64 / 1000;
            format!(
                "last run {} ago in {:.1} ms",
                human_duration(ago),
                c.last_duration_us as f64 / 1000.0
            )
        };
        let mut counts: Vec<_> = c.counts.iter().collect();
        counts.sort();
        let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "  {:<width$} {:<9} {last}  {}",
            c.name,
            c.state,
            counts.join(" ")
        );
        let indent = " ".repeat(width + 3);
        if !c.detail.is_empty() {
            let _ = writeln!(out, "{indent}{}", c.detail);
        }
        if !c.last_error.is_empty() {
            let _ = writeln!(out, "{indent}error: {}", c.last_error);
        }
    }
    let _ = writeln!(out, "\n{}", status.ecs);
    let _ = writeln!(
        out,
        "traces: relay {}, {} spans received, {} duplicate spans dropped, {} batches refused (wrong or missing STS_RELAY_TOKEN)",
        status.trace_relay,
        status.spans_received_total,
        status.spans_duplicate_total,
        status.relay_refused_total
    );
    for s in &status.sidecars {
        let _ = writeln!(
            out,
            "  sidecar {} at {} ({}): {}, {} spans, {:.0} spans/s, {} dropped",
            s.sidecar_id,
            s.addr,
            if s.task_arn.is_empty() {
                "no task"
            } else {
                &s.task_arn
            },
            if s.connected {
                "connected"
            } else {
                "disconnected"
            },
            s.spans_received,
            s.spans_per_second,
            s.dropped_spans
        );
    }
    let _ = writeln!(out, "\nDrops:");
    if status.drops.is_empty() {
        let _ = writeln!(out, "  none");
    }
    let mut drops: Vec<_> = status.drops.iter().collect();
    drops.sort();
    for (k, v) in drops {
        let _ = writeln!(out, "  {k:<28} {v}");
    }
    let _ = writeln!(out, "\nConfiguration:");
    let mut config: Vec<_> = status.config.iter().collect();
    config.sort();
    for (k, v) in config {
        let _ = writeln!(out, "  {k:<48} {v}");
    }
    out
}

fn human_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sts_proto::daemon::v1::{CollectorStatus, SidecarStatus};

    fn sample() -> GetStatusResponse {
        GetStatusResponse {
            version: "0.1.0".into(),
            hostname: "h1".into(),
            uptime_seconds: 3725,
            config: [("STS_API_KEY".to_string(), "<set, redacted>".to_string())].into(),
            collectors: vec![
                CollectorStatus {
                    name: "processes".into(),
                    state: "failed".into(),
                    last_run_unix_ms: 1,
                    last_duration_us: 1500,
                    last_error: "cannot list /proc".into(),
                    counts: [("reported".to_string(), 7)].into(),
                    detail: String::new(),
                },
                CollectorStatus {
                    name: "forward.process-agent".into(),
                    state: "ok".into(),
                    ..CollectorStatus::default()
                },
            ],
            drops: [("process.vanished".to_string(), 2)].into(),
            healthy: false,
            ecs: "ecs: not detected".into(),
            trace_relay: "listening on 0.0.0.0:7183".into(),
            spans_received_total: 12,
            spans_duplicate_total: 0,
            relay_refused_total: 0,
            sidecars: vec![SidecarStatus {
                sidecar_id: "sc-1".into(),
                addr: "172.17.0.3:40000".into(),
                connected: true,
                spans_received: 12,
                ..SidecarStatus::default()
            }],
        }
    }

    #[test]
    fn text_report() {
        let text = to_text(&sample());
        assert!(
            text.starts_with("node-daemon 0.1.0 on h1, up 1h02m05s, UNHEALTHY"),
            "{text}"
        );
        // Names in one column as wide as the longest; details under the state.
        assert!(
            text.contains("\n  processes             failed    last run"),
            "{text}"
        );
        assert!(
            text.contains("\n  forward.process-agent ok        never run"),
            "{text}"
        );
        assert!(
            text.contains("\n                        error: cannot list /proc"),
            "{text}"
        );
        assert!(text.contains("reported=7"));
        assert!(text.contains("process.vanished"));
        assert!(text.contains("ecs: not detected"));
        assert!(
            text.contains("sidecar sc-1 at 172.17.0.3:40000 (no task): connected, 12 spans"),
            "{text}"
        );
    }

    #[test]
    fn json_report() {
        let v = to_json(&sample());
        assert_eq!(v["healthy"], false);
        assert_eq!(v["collectors"][0]["counts"]["reported"], 7);
        assert_eq!(v["drops"]["process.vanished"], 2);
    }
}
