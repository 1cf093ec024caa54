"""raftq.otel against a real 3-node cluster, with the OpenTelemetry SDK's in-memory exporter
(tests/worker/otel_run.py, in a process of its own): the typed task's create span carries
its context in the job, the worker's process span is its child and linked to it, a failure
marks the span, the client's claim and ack spans carry the messaging attributes; and without
the OpenTelemetry API nothing changes but the spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.integration.cluster import Cluster
from tests.worker.conftest import REPO, nodes_of


def _run(cluster: Cluster, *extra: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "tests/worker/otel_run.py", nodes_of(cluster), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_spans_of_tasks_workers_and_clients(worker_cluster: Cluster) -> None:
    spans = _run(worker_cluster)
    ids = spans[0]["ids"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    (request,) = by_name["request"]
    creates = by_name["create otel.tasks"]
    sends = by_name["send otel.tasks"]
    processes = by_name["process otel.tasks"]
    assert len(creates) == len(sends) == len(processes) == 2
    for create in creates:
        assert create["kind"] == "PRODUCER" and create["parent"] == request["span"]
        assert create["trace"] == request["trace"]
    for send in sends:
        assert send["kind"] == "PRODUCER"
        assert send["parent"] in {c["span"] for c in creates}
        attrs = send["attributes"]
        assert attrs["messaging.system"] == "raftq"
        assert attrs["messaging.destination.name"] == "otel.tasks"
        assert attrs["messaging.operation.type"] == "send"
        assert attrs["messaging.message.id"] in {str(ids["ok"]), str(ids["bad"])}
    for p in processes:
        assert p["kind"] == "CONSUMER" and p["trace"] == request["trace"]
        assert p["parent"] in {c["span"] for c in creates}
        assert p["links"] == [p["parent"]]
        assert p["attributes"]["raftq.job.attempt"] == 1
    failed = next(
        p for p in processes if p["attributes"]["messaging.message.id"] == str(ids["bad"])
    )
    assert failed["status"] == "ERROR" and "exception" in failed["events"]
    fine = next(p for p in processes if p["attributes"]["messaging.message.id"] == str(ids["ok"]))
    assert fine["status"] == "UNSET"
    (receive,) = by_name["receive otel.raw"]
    assert receive["kind"] == "CLIENT"
    assert receive["attributes"]["messaging.batch.message_count"] == 1
    assert receive["attributes"]["messaging.message.id"] == str(ids["raw"])
    (ack,) = by_name["ack"]
    assert ack["attributes"]["messaging.operation.type"] == "settle"
    assert ack["attributes"]["messaging.message.id"] == str(ids["raw"])


def test_without_the_opentelemetry_api_jobs_carry_no_trace(worker_cluster: Cluster) -> None:
    [shown] = _run(worker_cluster, "no-otel")
    assert shown["payload"] == {"task": "square", "args": [], "kwargs": {"n": 3}}  # no trace


def test_the_tracing_example_makes_one_trace(worker_cluster: Cluster) -> None:
    done = subprocess.run(
        [sys.executable, "examples/otel_tracing.py"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "RAFTQ_NODES": nodes_of(worker_cluster)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "report for customer 42" in lines
    spans = [line.split() for line in lines if line.startswith("trace ")]
    names = {" ".join(s[2:-1]) for s in spans}
    assert {"GET /reports/42", "create reports", "send reports", "process reports"} <= names
    assert len({s[1] for s in spans}) == 1  # one trace
