//! One synthetic span shape for every bench and load test: trace `t`, span `s` of a
//! Python web app (a Flask request whose children are Postgres queries), as its Datadog
//! tracer sends them: 10 meta entries and 3 metrics, the root carrying the client's pid as
//! `process_id`. Each consumer encodes it its own way (msgpack, the relay's protobuf).

/// The fields of one span, in the order the tracer writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSpan {
    pub service: &'static str,
    pub name: &'static str,
    pub resource: String,
    pub r#type: &'static str,
    pub start: i64,
    pub duration: i64,
    pub error: bool,
    pub meta: Vec<(&'static str, String)>,
    pub metrics: Vec<(&'static str, f64)>,
}

/// The start of trace 0, in ns since the epoch.
pub const FIRST_START_NS: i64 = 1_764_000_000_000_000_000;

/// Span `s` (0 = the root) of trace `t`, from the process `pid`. The ids are the
/// consumer's to choose.
pub fn web_span(t: u64, s: u64, pid: u32) -> WebSpan {
    let root = s == 0;
    let resource = if root {
        format!("GET /api/v1/items/{}", t % 13)
    } else {
        format!("SELECT id, name, price FROM items WHERE id = {}", s % 7)
    };
    let meta = vec![
        ("env", "production".to_string()),
        ("version", "2.14.1".to_string()),
        ("language", "python".to_string()),
        ("component", pick(root, "flask", "psycopg").to_string()),
        ("span.kind", pick(root, "server", "client").to_string()),
        ("http.method", "GET".to_string()),
        ("http.status_code", "200".to_string()),
        (
            "http.url",
            format!("http://shop.internal:8080/api/v1/items/{}", t % 97),
        ),
        ("runtime-id", "3d440d753efa4b4b9cb9ed1695f9d9e0".to_string()),
        ("_dd.p.tid", format!("{:016x}", 0x6920_0000_0000_0000 | t)),
    ];
    let metrics = if root {
        vec![
            ("_sampling_priority_v1", 1.0),
            ("_dd.top_level", 1.0),
            ("process_id", f64::from(pid)),
        ]
    } else {
        vec![
            ("_sampling_priority_v1", 1.0),
            ("_dd.measured", 1.0),
            ("db.row_count", (s % 5) as f64),
        ]
    };
    WebSpan {
        service: "shop-web",
        name: pick(root, "flask.request", "postgres.query"),
        resource,
        r#type: pick(root, "web", "sql"),
        start: FIRST_START_NS + (t * 1_000_000 + s * 20_000) as i64,
        duration: 349_151 + s as i64 * 1_717,
        error: t % 50 == 0 && root,
        meta,
        metrics,
    }
}

fn pick(root: bool, yes: &'static str, no: &'static str) -> &'static str {
    if root {
        yes
    } else {
        no
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_and_its_children() {
        let root = web_span(3, 0, 42);
        let child = web_span(3, 1, 42);
        assert_eq!((root.name, child.name), ("flask.request", "postgres.query"));
        assert_eq!(root.meta.len(), 10);
        assert!(root.metrics.contains(&("process_id", 42.0)));
        assert!(!child.metrics.iter().any(|(k, _)| *k == "process_id"));
        assert!(child.start > root.start);
    }
}
