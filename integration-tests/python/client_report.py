"""What both trace clients print when done, for the test to check what the daemon got."""
import json
import os
import sys
import time

import psutil


def linger_and_report(sent_spans, service):
    """Stays alive LINGER seconds (default 0), so that the daemon and the test still find this
    process in /proc when its spans arrive, then prints one JSON line: the pid, its create
    time (psutil), the spans sent and the service."""
    time.sleep(float(os.environ.get("LINGER", "0")))
    print(json.dumps({
        "pid": os.getpid(),
        "create_time_ms": int(psutil.Process().create_time() * 1000),
        "spans": sent_spans,
        "service": service,
    }))
    sys.stdout.flush()
