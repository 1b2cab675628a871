"""An OTLP receiver for the export tests, decoding with the official classes of the
`opentelemetry-proto` package: OTLP/gRPC (grpcio) on GRPC_PORT and OTLP/HTTP on HTTP_PORT
(`/v1/traces`, `/v1/metrics`, protobuf, gzip or not). Each request it takes is appended to
OUT as one JSON line: the signal, the transport, the request's headers (names in lower
case) and the request (`MessageToDict`, proto field names). The first REFUSE_FIRST requests
(default 0) are refused as unavailable (gRPC UNAVAILABLE, HTTP 503), so that the exporter
has to retry. With REJECT_SPANS=N each traces request it takes is answered with a partial
success refusing N of its spans. Prints "ready" once both listeners are up."""
import gzip
import json
import os
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

out_path = os.environ["OUT"]
refuse_first = int(os.environ.get("REFUSE_FIRST", "0"))
reject_spans = int(os.environ.get("REJECT_SPANS", "0"))
lock = threading.Lock()
seen = {"requests": 0}

SIGNALS = {
    "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                   trace_service_pb2.ExportTraceServiceResponse),
    "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                    metrics_service_pb2.ExportMetricsServiceResponse),
}


def take(signal, transport, headers, request):
    """Records the request; False when it is one of the first REFUSE_FIRST."""
    with lock:
        seen["requests"] += 1
        if seen["requests"] <= refuse_first:
            return False
        line = {
            "signal": signal,
            "transport": transport,
            "headers": {k.lower(): v for k, v in headers},
            "request": MessageToDict(request, preserving_proto_field_name=True),
        }
        with open(out_path, "a") as out:
            out.write(json.dumps(line) + "\n")
        return True


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        if not take("traces", "grpc", context.invocation_metadata(), request):
            context.abort(grpc.StatusCode.UNAVAILABLE, "refused on purpose")
        return traces_answer()


def traces_answer():
    """A full success, or the partial success of REJECT_SPANS."""
    answer = trace_service_pb2.ExportTraceServiceResponse()
    if reject_spans:
        answer.partial_success.rejected_spans = reject_spans
        answer.partial_success.error_message = "spans refused on purpose"
    return answer


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def Export(self, request, context):
        if not take("metrics", "grpc", context.invocation_metadata(), request):
            context.abort(grpc.StatusCode.UNAVAILABLE, "refused on purpose")
        return metrics_service_pb2.ExportMetricsServiceResponse()


class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        signal = SIGNALS.get(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if signal is None:
            return self.answer(404, b"")
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        name, request_class, response_class = signal
        request = request_class.FromString(body)
        if not take(name, "http", self.headers.items(), request):
            return self.answer(503, b"refused on purpose")
        answer = traces_answer() if name == "traces" else response_class()
        self.answer(200, answer.SerializeToString())

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
server.add_insecure_port(f"127.0.0.1:{os.environ['GRPC_PORT']}")
server.start()
http = ThreadingHTTPServer(("127.0.0.1", int(os.environ["HTTP_PORT"])), Http)
print("ready")
sys.stdout.flush()
http.serve_forever()
