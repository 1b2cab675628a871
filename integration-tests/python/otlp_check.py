"""Checks what otlp_receiver.py recorded (decoded with the official opentelemetry-proto
classes) against psutil and Docker. Environment: OUT (the receiver's JSON lines), PID (the
trace client, alive while this runs), SERVICE and SPANS (what it sent), CONTAINER (a running
container's id), TOKEN (the bearer token the exports must carry) and PASSWORD (a value on the
client's command line that must not leave the host). Prints one JSON line of what it checked;
exits 1 with the first mismatch."""
import base64
import json
import os
import socket
import subprocess
import sys

import psutil

pid = int(os.environ["PID"])
service = os.environ["SERVICE"]
spans_sent = int(os.environ["SPANS"])
container_id = os.environ["CONTAINER"]
token = os.environ["TOKEN"]
password = os.environ["PASSWORD"]
checked = []


def fail(message):
    print(json.dumps({"ok": False, "error": message, "checked": checked}))
    sys.exit(1)


def expect(what, got, want):
    if got != want:
        fail(f"{what}: got {got!r}, want {want!r}")
    checked.append(what)


def attributes(resource):
    """A resource's attributes as a dict of plain values."""
    out = {}
    for kv in resource.get("attributes", []):
        value = kv.get("value", {})
        for kind in ("string_value", "int_value", "double_value", "bool_value"):
            if kind in value:
                out[kv["key"]] = int(value[kind]) if kind == "int_value" else value[kind]
    return out


lines = [json.loads(line) for line in open(os.environ["OUT"])]
if not lines:
    fail("the receiver recorded nothing")
for line in lines:
    expect("authorization header", line["headers"].get("authorization"), f"Bearer {token}")
    if password in json.dumps(line):
        fail(f"the password on the client's command line left the host ({line['signal']})")
checked.append("no password in any export")

client = psutil.Process(pid)
machine_id = open("/etc/machine-id").read().strip()
host = socket.gethostname()

# Traces: the client's spans under one resource naming its process.
spans, resources = [], []
for line in lines:
    if line["signal"] != "traces":
        continue
    for rs in line["request"].get("resource_spans", []):
        attrs = attributes(rs.get("resource", {}))
        if attrs.get("process.pid") == pid and attrs.get("service.name") == service:
            resources.append(attrs)
            for ss in rs.get("scope_spans", []):
                spans.extend(ss.get("spans", []))
if not resources:
    fail(f"no trace resource with process.pid {pid} and service.name {service}")
expect("spans of the client", len(spans), spans_sent)
ids = {(s["trace_id"], s["span_id"]) for s in spans}
expect("distinct spans", len(ids), spans_sent)
expect("trace id length", {len(base64.b64decode(s["trace_id"])) for s in spans}, {16})
expect("span id length", {len(base64.b64decode(s["span_id"])) for s in spans}, {8})
expect("root spans are servers", {s["kind"] for s in spans if "parent_span_id" not in s},
       {"SPAN_KIND_SERVER"})
attrs = resources[0]
expect("trace resource process.executable.name", attrs.get("process.executable.name"),
       client.name())
masked = [a if password not in a else None for a in client.cmdline()]
got = attrs.get("process.command_line", "").split(" ")
expect("command line length", len(got), len(masked))
for have, want in zip(got, masked):
    if want is not None:
        expect("command line argument", have, want)
expect("trace resource host.name", attrs.get("host.name"), host)
expect("trace resource host.id", attrs.get("host.id"), machine_id)

# Metrics: the host's, the client's process and the container.
metric_resources = []
for line in lines:
    if line["signal"] == "metrics":
        for rm in line["request"].get("resource_metrics", []):
            metrics = {}
            for sm in rm.get("scope_metrics", []):
                for m in sm.get("metrics", []):
                    points = (m.get("gauge") or m.get("sum") or {}).get("data_points", [])
                    metrics[m["name"]] = points
            metric_resources.append((attributes(rm.get("resource", {})), metrics))


def find(what, match):
    for attrs, metrics in reversed(metric_resources):
        if match(attrs, metrics):
            return attrs, metrics
    fail(f"no metrics resource for {what}")


_, host_metrics = find("the host", lambda a, m: "system.memory.limit" in m)
expect("system.memory.limit", host_metrics["system.memory.limit"][0]["as_double"],
       float(psutil.virtual_memory().total))
expect("system.cpu.logical.count", host_metrics["system.cpu.logical.count"][0]["as_double"],
       float(psutil.cpu_count()))

attrs, process_metrics = find("the client", lambda a, m: a.get("process.pid") == pid)
expect("process.executable.name", attrs.get("process.executable.name"), client.name())
expect("process.parent_pid", attrs.get("process.parent_pid"), client.ppid())
rss = process_metrics["process.memory.usage"][0]["as_double"]
now = client.memory_info().rss
if not 0.7 * now <= rss <= 1.3 * now:
    fail(f"process.memory.usage {rss} is not within 30% of psutil's rss {now}")
checked.append("process.memory.usage")
expect("process.thread.count", process_metrics["process.thread.count"][0]["as_double"],
       float(client.num_threads()))

inspect = json.loads(subprocess.run(["docker", "inspect", container_id], check=True,
                                    capture_output=True).stdout)[0]
attrs, container_metrics = find("the container", lambda a, m: a.get("container.id") == container_id)
expect("container.name", attrs.get("container.name"), inspect["Name"].lstrip("/"))
expect("container.image.name", attrs.get("container.image.name"),
       inspect["Config"]["Image"].split(":")[0])
expect("container.runtime", attrs.get("container.runtime"), "docker")
labels = inspect["Config"]["Labels"] or {}
task_arn = labels.get("com.amazonaws.ecs.task-arn")
if task_arn:
    expect("aws.ecs.task.arn", attrs.get("aws.ecs.task.arn"), task_arn)
    expect("aws.ecs.task.family", attrs.get("aws.ecs.task.family"),
           labels["com.amazonaws.ecs.task-definition-family"])
    expect("aws.ecs.task.revision", attrs.get("aws.ecs.task.revision"),
           labels["com.amazonaws.ecs.task-definition-version"])
    region_account = task_arn.split(":task/")[0]
    expect("aws.ecs.cluster.arn", attrs.get("aws.ecs.cluster.arn"),
           f"{region_account}:cluster/{labels['com.amazonaws.ecs.cluster']}")
    expect("aws.ecs.launchtype", attrs.get("aws.ecs.launchtype"), "ec2")
if "container.memory.usage" not in container_metrics:
    fail(f"the container has no container.memory.usage: {sorted(container_metrics)}")
checked.append("container.memory.usage")

print(json.dumps({"ok": True, "checked": checked, "spans": len(spans)}))
