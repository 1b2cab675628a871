//! Disk queue throughput: `cargo bench -p node-daemon --bench disk_queue`.
//!
//! For 4 KiB and 256 KiB records, under both sync policies, in a fresh queue in
//! `BENCH_QUEUE_DIR` (default: the system temporary directory):
//!
//! - push: records pushed back to back (the receiver is down);
//! - drain: `peek` + `ack` of all of them (the receiver is back);
//! - push+ack: one push, one peek, one ack, repeated (a queue that never builds up);
//! - reopen: `open` of the filled queue (the scan of every segment), page cache warm.
//!
//! Each phase stops at `BENCH_QUEUE_MB` MiB (default 256) or after `BENCH_SECS` seconds
//! (default 3), whichever first. Prints a table; exits 0.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use node_daemon::forward::queue::{DiskQueue, QueueOptions, SyncPolicy};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Rate {
    records: u64,
    bytes: u64,
    took: Duration,
}

impl Rate {
    fn cells(&self) -> String {
        let s = self.took.as_secs_f64();
        format!(
            "{:>9.1} MB/s {:>10.0} rec/s {:>8} rec {:>7.2} s",
            self.bytes as f64 / s / 1e6,
            self.records as f64 / s,
            self.records,
            s
        )
    }
}

fn timed(budget_bytes: u64, budget: Duration, size: usize, mut step: impl FnMut() -> bool) -> Rate {
    let start = Instant::now();
    let mut records = 0;
    while records * (size as u64) < budget_bytes && start.elapsed() < budget {
        if !step() {
            break;
        }
        records += 1;
    }
    Rate {
        records,
        bytes: records * size as u64,
        took: start.elapsed(),
    }
}

fn main() {
    let root: PathBuf = std::env::var_os("BENCH_QUEUE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let budget_bytes = env_u64("BENCH_QUEUE_MB", 256) << 20;
    let budget = Duration::from_secs(env_u64("BENCH_SECS", 3));
    println!(
        "disk queue in {} (budget per phase: {} MiB or {} s)",
        root.display(),
        budget_bytes >> 20,
        budget.as_secs()
    );
    let policies = [
        ("every push", SyncPolicy::EveryPush),
        ("1 s", SyncPolicy::Interval(Duration::from_secs(1))),
    ];
    for size in [4usize << 10, 256 << 10] {
        for (policy_name, sync) in policies {
            let dir = tempfile::tempdir_in(&root).expect("temporary directory");
            let opts = QueueOptions {
                sync,
                ..QueueOptions::default()
            };
            let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let label = format!("{:>3} KiB, sync {policy_name:<10}", size >> 10);

            let mut q = DiskQueue::open_with(dir.path(), opts).expect("open");
            let push = timed(budget_bytes, budget, size, || {
                q.push(&payload).expect("push");
                true
            });
            println!("{label} push      {}", push.cells());
            drop(q);

            let start = Instant::now();
            let mut q = DiskQueue::open_with(dir.path(), opts).expect("reopen");
            let reopen = start.elapsed();
            assert_eq!(q.len(), push.records);
            println!(
                "{label} reopen    {:>9.1} ms for {} MiB",
                reopen.as_secs_f64() * 1e3,
                q.stats().disk_bytes >> 20
            );

            let drain = timed(u64::MAX, Duration::MAX, size, || {
                match q.peek().expect("peek") {
                    Some(r) => q.ack(r.id).expect("ack"),
                    None => false,
                }
            });
            assert_eq!(drain.records, push.records);
            println!("{label} drain     {}", drain.cells());

            let both = timed(budget_bytes, budget, size, || {
                q.push(&payload).expect("push");
                let r = q.peek().expect("peek").expect("a record");
                q.ack(r.id).expect("ack")
            });
            println!("{label} push+ack  {}", both.cells());
            assert_eq!(q.dropped_records(), 0);
        }
    }
}
