//! Cost of one container-collection cycle with 100 running containers: the CPU time of
//! `ContainerCollector::collect` (enrichment from the event-fed store and cgroup
//! telemetry), and the Docker API calls the cycle makes, measured against a real engine.
//!
//! Run with `cargo bench -p integration-tests --bench container_cycle`.

use bench_support::thread_cpu;
use integration_tests::docker::{self, Container};
use node_daemon::collect::container::{load_once, ContainerCollector, ContainerStore};

const CONTAINERS: usize = 100;
const TARGET_CPU_MS: f64 = 50.0;

fn main() {
    if !docker::available("container_cycle benchmark") {
        return;
    }
    docker::ensure_test_image();
    println!("starting {CONTAINERS} containers...");
    let containers: Vec<Container> = (0..CONTAINERS)
        .map(|i| {
            let label =
                format!("com.amazonaws.ecs.task-arn=arn:aws:ecs:us-east-1:1:task/bench/{i:032x}");
            Container::run(&["--label", &label], &["sleep", "3600"])
        })
        .collect();

    let store = ContainerStore::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(load_once(&store))
        .expect("Docker engine reachable");
    let calls_before = store.calls();
    let mut collector = ContainerCollector::new(
        "bench-host",
        store.clone(),
        std::path::Path::new("/sys/fs/cgroup"),
    );
    collector.collect(); // first sample, for CPU %

    let mut cpu_ms = Vec::new();
    for _ in 0..20 {
        let start = thread_cpu();
        let listed = collector.collect();
        cpu_ms.push((thread_cpu() - start).as_secs_f64() * 1000.0);
        assert!(listed.len() >= CONTAINERS);
        assert!(
            listed
                .iter()
                .filter(|c| c
                    .telemetry
                    .as_ref()
                    .is_some_and(|t| t.memory_usage_bytes.is_some()))
                .count()
                >= CONTAINERS
        );
    }
    let calls_after = store.calls();
    cpu_ms.sort_by(f64::total_cmp);
    let median = cpu_ms[cpu_ms.len() / 2];
    let max = cpu_ms[cpu_ms.len() - 1];
    let api_calls =
        (calls_after.lists + calls_after.inspects) - (calls_before.lists + calls_before.inspects);
    println!("container cycle with {} containers: CPU median {median:.2} ms, max {max:.2} ms (target <= {TARGET_CPU_MS} ms): {}",
        collector.store().len(),
        if median <= TARGET_CPU_MS { "PASS" } else { "FAIL" });
    println!("Docker API calls per cycle: {} (the store is fed by the events stream; start-up cost: {} list + {} inspect)",
        api_calls as f64 / 20.0, calls_before.lists, calls_before.inspects);
    drop(containers);
}
