"""Prints, as JSON keyed by pid, what psutil reports for every process (the peer the
process collector is checked against). Kernel threads are marked from the PF_KTHREAD flag."""
import json
import sys

import psutil

PF_KTHREAD = 0x00200000


def kernel_thread(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[6]) & PF_KTHREAD != 0
    except OSError:
        return None


out = {}
for p in psutil.process_iter():
    try:
        with p.oneshot():
            t = p.cpu_times()
            mem = p.memory_info()
            try:
                io = p.io_counters()
                read_bytes, write_bytes = io.read_bytes, io.write_bytes
            except (psutil.AccessDenied, AttributeError):
                read_bytes = write_bytes = None
            out[p.pid] = {
                "ppid": p.ppid(),
                "create_time": p.create_time(),
                "name": p.name(),
                "cpu_user": t.user,
                "cpu_system": t.system,
                "rss": mem.rss,
                "vms": mem.vms,
                "read_bytes": read_bytes,
                "write_bytes": write_bytes,
                "threads": p.num_threads(),
                "fds": p.num_fds(),
                "kernel_thread": kernel_thread(p.pid),
            }
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        continue
json.dump(out, sys.stdout)
