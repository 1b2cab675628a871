#!/usr/bin/env python3
"""Records what a real ddtrace client sends to the agent, as fixtures for the decoders.

    .venv/bin/pip install ddtrace==4.16.0
    .venv/bin/python trace-sidecar/testdata/capture-ddtrace.py trace-sidecar/testdata

For each API version (v0.4, v0.5) this starts a small HTTP server on 127.0.0.1 that stores
every body sent to /vX/traces, then runs a child Python process with ddtrace pointed at it
(DD_TRACE_AGENT_URL, DD_TRACE_API_VERSION). The child makes two traces: a web request with
a database child span that fails, and a background job whose root carries custom tags and
metrics. The first traces body of each version is written to ddtrace-<version>.msgpack.
tests/decode_fixtures.rs asserts what these files must decode to.
"""
import http.server
import json
import os
import subprocess
import sys
import threading

CHILD = r"""
import ddtrace
from ddtrace.trace import tracer

with tracer.trace("flask.request", service="shop-web", resource="GET /cart", span_type="web") as root:
    root.set_tag("http.method", "GET")
    root.set_tag("http.url", "http://shop.local/cart?id=7")
    root.set_tag("http.status_code", "500")
    root.set_tag("user.tier", "gold")
    root.set_metric("cart.items", 3)
    root.set_metric("cart.value", 42.5)
    with tracer.trace("postgres.query", service="shop-db", resource="SELECT * FROM cart WHERE id = %s", span_type="sql") as db:
        db.set_tag("db.system", "postgresql")
        db.set_tag("out.host", "db.internal")
        db.set_metric("db.row_count", 0)
        try:
            raise ValueError("connection reset by peer")
        except ValueError:
            db.set_exc_info(*__import__("sys").exc_info())

with tracer.trace("job.run", service="shop-worker", resource="nightly-report") as job:
    job.set_tag("job.name", "nightly-report")
    job.set_tag("unicode", "caf\u00e9 \u2603")
    job.set_metric("job.attempt", 2)

tracer.flush()
tracer.shutdown()
print(ddtrace.__version__)
"""


def serve(bodies):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _reply(self, code, body):
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path.endswith("/traces"):
                bodies.append((self.path, dict(self.headers), body))
                self._reply(200, b'{"rate_by_service":{}}')
            else:
                self._reply(404, b"{}")

        do_POST = do_PUT

        def do_GET(self):
            self._reply(404, b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def capture(version, out_dir):
    bodies = []
    server = serve(bodies)
    env = dict(os.environ)
    env.update(
        DD_TRACE_AGENT_URL=f"http://127.0.0.1:{server.server_address[1]}",
        DD_TRACE_API_VERSION=version,
        DD_ENV="test",
        DD_VERSION="1.2.3",
        DD_TRACE_STARTUP_LOGS="false",
        DD_INSTRUMENTATION_TELEMETRY_ENABLED="false",
        DD_REMOTE_CONFIGURATION_ENABLED="false",
        DD_TRACE_STATS_COMPUTATION_ENABLED="false",
    )
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                         capture_output=True, text=True, timeout=60)
    server.shutdown()
    if not bodies:
        sys.exit(f"{version}: ddtrace sent no traces payload; stderr:\n{out.stderr}")
    path, headers, body = bodies[0]
    name = os.path.join(out_dir, f"ddtrace-{version}.msgpack")
    with open(name, "wb") as f:
        f.write(body)
    print(f"{version}: ddtrace {out.stdout.strip()} sent {len(body)} bytes to {path} "
          f"({len(bodies)} payloads), headers {json.dumps({k: v for k, v in headers.items() if k.lower().startswith(('datadog', 'content', 'x-datadog'))})}")


if __name__ == "__main__":
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for version in ("v0.4", "v0.5"):
        capture(version, out_dir)
