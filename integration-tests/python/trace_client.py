"""A real ddtrace client for the trace tests: sends TRACES traces of SPANS spans each to
DD_TRACE_AGENT_URL with DD_TRACE_API_VERSION (waiting TRACE_INTERVAL seconds after each
trace, default 0), then prints one JSON line with its pid, its create time (psutil) and what
it sent, so the test can check what the daemon received."""
import os
import time

from client_report import linger_and_report
from ddtrace.trace import tracer

traces = int(os.environ.get("TRACES", "10"))
spans = int(os.environ.get("SPANS", "3"))
service = os.environ.get("SERVICE", "it-python")
interval = float(os.environ.get("TRACE_INTERVAL", "0"))

for t in range(traces):
    with tracer.trace("request", service=service, resource=f"GET /item/{t}") as root:
        root.set_tag("it.trace", str(t))
        root.set_metric("it.value", t)
        for s in range(spans - 1):
            with tracer.trace("db.query", service=service, resource="SELECT 1") as child:
                child.set_tag("it.child", str(s))
                if s == 0 and t % 5 == 0:
                    child.error = 1
    if interval:
        time.sleep(interval)
tracer.flush()
tracer.shutdown(timeout=10)
linger_and_report(traces * spans, service)
