"""/metrics, the dashboard page and structured logs, over real aiohttp servers, on
``LocalNode``s and on real ``RaftNode``s (the in-memory transport: no raft sockets).

The cluster-wide version (every node of a real 3-node cluster agrees) is in
tests/integration/test_observability.py.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftq.logs import setup_logging
from tests.support.memory_cluster import ON_BOTH


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scrape: dict[Any, float], name: str, **labels: str) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


async def scrape(h: Any, node: str | None = None) -> dict[Any, float]:
    r = await h.get("/metrics", node=node)
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    return samples(r.raw.decode())


@ON_BOTH
async def test_metrics_say_what_happened(start):
    async with start(followers=1) as h:
        r = await h.post("/v1/queues/q/jobs", {"jobs": [{"payload": i} for i in range(10)]})
        assert r.status == 201
        r = await h.post("/v1/queues/q/claim", {"worker": "w1", "max": 4}, node="n2")
        leases = r.body["jobs"]
        for job in leases:
            r = await h.post(f"/v1/jobs/{job['id']}/ack", {"token": job["token"]})
            assert r.status == 200
        await h.caught_up()
        for node in ("n1", "n2"):  # the same state, so the same numbers on both
            m = await scrape(h, node)
            assert value(m, "raftq_queue_jobs", queue="q", state="queued") == 6
            assert value(m, "raftq_queue_jobs", queue="q", state="succeeded") == 4
            assert value(m, "raftq_queue_jobs", queue="q", state="leased") == 0
            assert value(m, "raftq_queue_ready_jobs", queue="q", priority="0") == 6
            assert value(m, "raftq_jobs_total", queue="q", outcome="enqueued") == 10
            assert value(m, "raftq_jobs_total", queue="q", outcome="claimed") == 4
            assert value(m, "raftq_jobs_total", queue="q", outcome="succeeded") == 4
            assert value(m, "raftq_jobs_total", queue="q", outcome="dead") == 0
            assert value(m, "raftq_job_run_seconds_count", queue="q") == 4
            assert value(m, "raftq_job_wait_seconds_count", queue="q") == 4
            assert value(m, "raftq_job_wait_seconds_bucket", queue="q", le="+Inf") == 4
            assert value(m, "raftq_workers", queue="q") == 1
            node_id = h.nodes[node].node_id
            assert value(m, "raftq_node_info", node=node_id, version=_version()) == 1
        m = await scrape(h, "n2")
        # The claim went through n2 (forwarded); the acks straight to n1.
        assert value(m, "raftq_forwarded_requests_total", outcome="ok") == 1
        key = ("raftq_http_request_duration_seconds_count",)
        routes = {dict(k[1])["route"] for k in m if k[:1] == key}
        assert routes == {"/v1/queues/{queue}/claim", "/metrics"}
        m = await scrape(h, "n1")
        assert (
            value(
                m,
                "raftq_http_request_duration_seconds_count",
                method="POST",
                route="/v1/jobs/{id}/ack",
                status="200",
            )
            == 4
        )


@ON_BOTH
async def test_unmatched_routes_share_one_label(start):
    async with start() as h:
        for path in ("/nope/1", "/nope/2", "/v1/jobs/1/nope"):
            assert (await h.get(path)).status == 404
        m = await scrape(h)
        assert (
            value(
                m,
                "raftq_http_request_duration_seconds_count",
                method="GET",
                route="unmatched",
                status="404",
            )
            == 3
        )


@ON_BOTH
async def test_leased_jobs_per_worker(start):
    async with start() as h:
        await h.post("/v1/queues/q/jobs", {"jobs": [{"payload": i} for i in range(5)]})
        await h.post("/v1/queues/q/claim", {"worker": "a", "max": 2})
        await h.post("/v1/queues/q/claim", {"worker": "b", "max": 1})
        m = await scrape(h)
        assert value(m, "raftq_worker_leased_jobs", queue="q", worker="a") == 2
        assert value(m, "raftq_worker_leased_jobs", queue="q", worker="b") == 1
        assert value(m, "raftq_workers", queue="q") == 2


@ON_BOTH
async def test_dashboard_for_browsers_json_index_for_clients(start):
    async with start() as h:
        r = await h.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        page = r.raw.decode()
        assert "<title>raftq</title>" in page
        assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # offline
        r = await h.get("/")
        assert r.body["service"] == "raftq"
        assert "GET /metrics" in r.body["routes"]


@ON_BOTH
async def test_cluster_with_peers(start, err):
    async with start(followers=1) as h:
        r = await h.get("/v1/cluster?peers=true", node="n2")
        assert r.status == 200
        leader = h.node.node_id
        assert r.body["peers"][leader]["id"] == leader
        assert "peers" not in (await h.get("/v1/cluster")).body
        r = await h.get("/v1/cluster?peers=maybe")
        assert r.status == 400 and err(r)[0] == "invalid"


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The CLI's JSON logging into a buffer (as ``raftq serve --log-format json``), undone
    after the test."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    buf = io.StringIO()
    setup_logging("debug", "json", node_id="n1", stream=buf)
    yield buf
    for hd in root.handlers[:]:
        if hd not in handlers:
            root.removeHandler(hd)
    root.setLevel(level)


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


@ON_BOTH
async def test_json_logs_carry_node_and_request_id_and_audit_who(start, json_log):
    async with start(followers=1) as h:
        r = await h.post("/v1/queues/q/pause", headers={"X-Request-Id": "abc-1"}, node="n2")
        assert r.status == 200
        r = await h.post("/v1/queues/q/purge")
        assert r.status == 200
        generated = r.headers["X-Raftq-Request"]
        assert generated.startswith("r-")
    lines = _lines(json_log)
    assert lines and all(line["node"] == "n1" for line in lines)
    audits = [line for line in lines if line["logger"] == "raftq.audit"]
    # One line per action, logged by the node that executed it (the leader), not the relay.
    assert [a["audit"] for a in audits] == ["pause", "purge"]
    pause, purge = audits
    assert pause["request_id"] == "abc-1" and pause["queue"] == "q"
    assert pause["who"] == "127.0.0.1" and pause["remote"] == "127.0.0.1"
    assert purge["request_id"] == generated and purge["purged"] == 0
    access = [line for line in lines if line["logger"] == "raftq.server.app"]
    assert {a["request_id"] for a in access} >= {"abc-1", generated}


def test_text_logs_carry_node_and_request_id() -> None:
    from raftq.log_context import request_scope  # noqa: PLC0415

    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    buf = io.StringIO()
    try:
        setup_logging("info", "text", node_id="n7", stream=buf)
        with request_scope("rid-9"):
            logging.getLogger("raftq.test").info("inside")
        logging.getLogger("raftq.test").info("outside")
    finally:
        for hd in root.handlers[:]:
            if hd not in handlers:
                root.removeHandler(hd)
        root.setLevel(level)
    inside, outside = buf.getvalue().splitlines()
    assert " n7 raftq.test: inside request_id=rid-9" in inside
    assert outside.endswith(" n7 raftq.test: outside")


def _version() -> str:
    from raftq import __version__  # noqa: PLC0415

    return __version__
