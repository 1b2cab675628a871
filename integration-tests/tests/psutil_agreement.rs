//! The process collector against psutil, the library the peer agents use, for the same
//! pids: the same set of processes, and the same memory, CPU time and IO figures.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use integration_tests::{python, snapshot_json, workspace_root, Guard};
use serde_json::Value;

fn psutil_dump() -> BTreeMap<u32, Value> {
    let script = workspace_root().join("integration-tests/python/psutil_dump.py");
    let out = Command::new(python())
        .arg(script)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "psutil: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    map.into_iter()
        .map(|(k, v)| (k.parse().unwrap(), v))
        .collect()
}

/// A process that burns CPU, writes to disk, then sits idle, so its counters hold still.
fn worker(i: usize) -> Guard {
    let script = format!(
        "import os,time\n\
         x=0\n\
         for i in range({}): x+=i\n\
         buf=bytearray(8<<20)\n\
         with open('/tmp/sts-it-{i}-%d' % os.getpid(), 'wb') as f:\n\
         \x20   f.write(os.urandom(1<<20)); f.flush(); os.fsync(f.fileno())\n\
         os.unlink('/tmp/sts-it-{i}-%d' % os.getpid())\n\
         time.sleep(3600)\n",
        2_000_000 * (i + 1)
    );
    Guard::spawn(Command::new("python3").args(["-c", &script]))
}

fn within(ours: f64, theirs: f64, pct: f64, abs: f64) -> bool {
    (ours - theirs).abs() <= (theirs.abs() * pct / 100.0).max(abs)
}

#[test]
fn same_processes_and_figures_as_psutil() {
    let workers: Vec<Guard> = (0..3).map(worker).collect();
    // Let the workers finish their work and go idle.
    std::thread::sleep(std::time::Duration::from_secs(3));

    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let snap = snapshot_json(&[("STS_PROCESS_BLACKLIST_PATTERNS", "^$never")]);
    let theirs = psutil_dump();
    let ours: BTreeMap<u32, &Value> = snap["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap() as u32, p))
        .collect();

    // Same set: every user-space process both saw that lived through both listings.
    let settled =
        |v: &Value| (v["create_time"].as_f64().unwrap() * 1000.0) as u64 + 2000 < started_ms;
    let psutil_pids: Vec<u32> = theirs
        .iter()
        .filter(|(_, v)| v["kernel_thread"] == false && settled(v))
        .map(|(pid, _)| *pid)
        .collect();
    let missing: Vec<u32> = psutil_pids
        .iter()
        .copied()
        .filter(|p| !ours.contains_key(p))
        .collect();
    assert!(
        missing.is_empty(),
        "psutil lists {missing:?} that the snapshot does not"
    );
    let extra: Vec<u32> = ours
        .keys()
        .copied()
        .filter(|p| theirs.get(p).is_some_and(|v| v["kernel_thread"] == true))
        .collect();
    assert!(extra.is_empty(), "snapshot lists kernel threads {extra:?}");

    // Same identity for every process both saw.
    for (pid, p) in &ours {
        let Some(t) = theirs.get(pid) else { continue };
        assert_eq!(p["ppid"], t["ppid"], "ppid of {pid}");
        let create_ms = t["create_time"].as_f64().unwrap() * 1000.0;
        assert!(
            within(p["create_time_ms"].as_f64().unwrap(), create_ms, 0.0, 11.0),
            "create time of {pid}"
        );
        assert_eq!(p["name"], t["name"], "name of {pid}");
    }

    // Same figures, within 2%, for the idle workers.
    for w in &workers {
        let pid = w.pid();
        let p = ours
            .get(&pid)
            .unwrap_or_else(|| panic!("worker {pid} listed"));
        let t = &theirs[&pid];
        let pairs = [
            ("rss_bytes", "rss"),
            ("vms_bytes", "vms"),
            ("cpu_user_seconds", "cpu_user"),
            ("cpu_system_seconds", "cpu_system"),
            ("read_bytes", "read_bytes"),
            ("write_bytes", "write_bytes"),
            ("threads", "threads"),
            ("open_fds", "fds"),
        ];
        for (our_key, their_key) in pairs {
            let (a, b) = (p[our_key].as_f64().unwrap(), t[their_key].as_f64().unwrap());
            // One clock tick of CPU time is the resolution of both.
            assert!(
                within(a, b, 2.0, 0.011),
                "{our_key} of {pid}: ours {a}, psutil {b}"
            );
        }
        assert!(
            p["write_bytes"].as_u64().unwrap() >= 1 << 20,
            "fsynced MiB counted: {p}"
        );
        assert!(p["cpu_user_seconds"].as_f64().unwrap() > 0.05, "{p}");
    }
}
