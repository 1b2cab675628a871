"""A real OpenTelemetry SDK client for the OTLP tests: sends TRACES traces of SPANS spans
each with the OTLP exporter of PROTOCOL (grpc or http) to ENDPOINT, then prints one JSON line
with its pid, its create time (psutil) and what it sent. With SET_PID=1 the resource names
the process (`process.pid`); without, the sidecar finds it from the connection. With
COMPRESSION=gzip the exporter compresses its requests (gRPC's grpc-encoding, HTTP's
Content-Encoding)."""
import os
import sys

from client_report import linger_and_report
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

traces = int(os.environ.get("TRACES", "10"))
spans = int(os.environ.get("SPANS", "3"))
service = os.environ.get("SERVICE", "it-otlp")
protocol = os.environ["PROTOCOL"]
endpoint = os.environ["ENDPOINT"]
compression = os.environ.get("COMPRESSION", "none")
if compression not in ("none", "gzip"):
    sys.exit(f"COMPRESSION={compression}: none or gzip")
gzip = compression == "gzip"

if protocol == "grpc":
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True,
                                compression=Compression.Gzip if gzip else Compression.NoCompression)
else:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint,
                                compression=Compression.Gzip if gzip else Compression.NoCompression)

attributes = {"service.name": service}
if os.environ.get("SET_PID") == "1":
    attributes["process.pid"] = os.getpid()
provider = TracerProvider(resource=Resource.create(attributes))
provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=200))
tracer = provider.get_tracer("it.otlp", "1.0")

for t in range(traces):
    with tracer.start_as_current_span(f"GET /item/{t}", kind=SpanKind.SERVER) as root:
        root.set_attribute("it.trace", str(t))
        root.set_attribute("it.value", t)
        for s in range(spans - 1):
            with tracer.start_as_current_span("db.query", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.system", "postgresql")
                if s == 0 and t % 5 == 0:
                    child.add_event("exception", {"exception.type": "ValueError",
                                                  "exception.message": "bad row"})
                    child.set_status(Status(StatusCode.ERROR, "query failed"))
if not provider.force_flush(timeout_millis=20000):
    sys.exit("the exporter did not flush")
provider.shutdown()
linger_and_report(traces * spans, service)
