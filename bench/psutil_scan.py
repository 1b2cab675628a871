"""psutil reference for the process-scan benchmark (node-daemon/benches/process_scan.rs).

Gathers, for every process of psutil.process_iter(), the fields the node-daemon process
collector reports: pid, ppid, create_time, name, exe, cmdline, username, cpu_times,
memory_info, io_counters, num_threads, num_fds, and the text of /proc/<pid>/cgroup (for
the container id). Each process is read inside `oneshot()`, psutil's fastest way.

Only the gathering loop is timed, in wall time and in CPU time of this thread. Prints one
JSON line per pass:
    {"pass": i, "seconds": s, "cpu_seconds": c, "processes": n, "per_process_us": u}

A warm pass reuses the Process objects that process_iter() keeps between calls, psutil's
fastest way to repeat a scan; a cold pass (`cold` requested) first empties that cache,
so that every process is new to psutil, as every process is to a new collector.

Usage: python psutil_scan.py [passes]      runs that many warm passes (default 7)
       python psutil_scan.py --serve       one pass per line read on stdin (`warm` or
                                           `cold`), until EOF; the benchmark interleaves
                                           its passes with the Rust ones so
"""

import json
import sys
import time

import psutil


def field(getter):
    try:
        return getter()
    except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return None


def read_cgroup(pid):
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            return f.read()
    except OSError:
        return None


def gather():
    rows = []
    for p in psutil.process_iter():
        try:
            with p.oneshot():
                rows.append(
                    (
                        p.pid,
                        p.ppid(),
                        p.create_time(),
                        p.name(),
                        field(p.exe),
                        field(p.cmdline),
                        field(p.username),
                        field(p.cpu_times),
                        field(p.memory_info),
                        field(p.io_counters),
                        field(p.num_threads),
                        field(p.num_fds),
                        read_cgroup(p.pid),
                    )
                )
        except psutil.NoSuchProcess:
            continue
    return rows


def timed_pass(i, cold=False):
    if cold:
        psutil.process_iter.cache_clear()
    start, cpu_start = time.perf_counter(), time.thread_time()
    rows = gather()
    seconds = time.perf_counter() - start
    cpu_seconds = time.thread_time() - cpu_start
    n = len(rows)
    print(
        json.dumps(
            {
                "pass": i,
                "cold": cold,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "processes": n,
                "per_process_us": seconds * 1e6 / max(n, 1),
            }
        ),
        flush=True,
    )


def main():
    if sys.argv[1:] == ["--serve"]:
        print(json.dumps({"ready": True, "psutil": psutil.__version__}), flush=True)
        for i, line in enumerate(sys.stdin):
            timed_pass(i, cold=line.strip() == "cold")
        return
    passes = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    for i in range(passes):
        timed_pass(i)


if __name__ == "__main__":
    main()
