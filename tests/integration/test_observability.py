"""Issue 8 on a real 3-node cluster: metrics agree on every node, `raftq status --json` matches
GET /v1/cluster, `raftq top --json`, JSON logs, and the dashboard in headless Chromium.

One cluster (nodes logging JSON) serves the whole module; each test uses its own queues.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftq.client import SyncClient
from tests.integration.cluster import Cluster, http_json
from tests.support import browser

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def jc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-node cluster whose nodes log JSON (``--log-format json``)."""
    c = Cluster.generate(tmp_path_factory.mktemp("obs"))
    c.log_args = ["--log-level", "INFO", "--log-format", "json"]
    with c:
        c.wait_ready()
        yield c


def _client(c: Cluster, *ids: str) -> SyncClient:
    return SyncClient([c.api[i] for i in ids or c.ids], timeout_ms=10_000)


def _scrape(c: Cluster, nid: str) -> Samples:
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(c.url(nid, "/metrics"), timeout=5) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _v(m: Samples, name: str, **labels: str) -> float:
    return m[(name, tuple(sorted(labels.items())))]


def _queue_samples(m: Samples, queue: str) -> Samples:
    return {k: v for k, v in m.items() if ("queue", queue) in k[1]}


def test_metrics_say_exactly_what_happened_on_every_node(jc: Cluster) -> None:
    leader = jc.leader()
    follower = next(n for n in jc.ids if n != leader)
    with _client(jc, follower) as client:  # through a follower: forwarded to the leader
        ids = client.enqueue_many("m", [{"payload": i, "priority": i % 3} for i in range(10)])
        assert len(ids) == 10
        claimed = client.claim(["m"], worker="w-metrics", max=4)
        assert len(claimed) == 4
        for job in claimed:
            client.ack(job.id, job.token)
    jc.wait_converged()
    scrapes = {nid: _scrape(jc, nid) for nid in jc.ids}
    for nid, m in scrapes.items():
        assert _v(m, "raftq_queue_jobs", queue="m", state="queued") == 6, nid
        assert _v(m, "raftq_queue_jobs", queue="m", state="succeeded") == 4, nid
        assert _v(m, "raftq_queue_jobs", queue="m", state="leased") == 0, nid
        assert _v(m, "raftq_jobs_total", queue="m", outcome="enqueued") == 10, nid
        assert _v(m, "raftq_jobs_total", queue="m", outcome="claimed") == 4, nid
        assert _v(m, "raftq_jobs_total", queue="m", outcome="succeeded") == 4, nid
        assert _v(m, "raftq_jobs_total", queue="m", outcome="failed") == 0, nid
        assert _v(m, "raftq_job_run_seconds_count", queue="m") == 4, nid
        assert _v(m, "raftq_job_wait_seconds_count", queue="m") == 4, nid
        assert _v(m, "raftq_workers", queue="m") == 1, nid
        ready = sum(_v(m, "raftq_queue_ready_jobs", queue="m", priority=str(p)) for p in range(10))
        assert ready == 6, nid
        assert _v(m, "raftq_raft_role", role="leader") == (1 if nid == leader else 0)
        assert _v(m, "raftq_raft_has_leader") == 1
        assert _v(m, "raftq_raft_applied_index") > 0
        assert _v(m, "raftq_raft_leader_changes_total") >= 1
        assert _v(m, "raftq_raft_fsync_duration_seconds_count") > 0  # fsync = "always"
    # Every queue series is identical on every node: they are the replicated state.
    per_node = [_queue_samples(m, "m") for m in scrapes.values()]
    assert per_node[0] and all(p == per_node[0] for p in per_node)
    terms = {_v(m, "raftq_raft_term") for m in scrapes.values()}
    assert len(terms) == 1
    # Group commit ran on the leader only; the first request was forwarded by the follower
    # (the client then follows the X-Raftq-Leader hint and talks to the leader itself).
    entries = _v(scrapes[leader], "raftq_raft_group_commit_batch_commands_count")
    assert entries > 0
    assert _v(scrapes[leader], "raftq_raft_group_commit_wait_seconds_count") == entries
    # An entry may still be in flight (the leader's ticks): at most one commit time each.
    assert 0 < _v(scrapes[leader], "raftq_raft_commit_duration_seconds_count") <= entries
    assert _v(scrapes[leader], "raftq_raft_commit_duration_seconds_sum") > 0
    assert _v(scrapes[follower], "raftq_forwarded_requests_total", outcome="ok") >= 1
    assert _v(scrapes[leader], "raftq_forwarded_requests_total", outcome="ok") == 0
    route = "/v1/queues/{queue}/jobs"
    key = ("raftq_http_request_duration_seconds_count",)
    routes = {dict(k[1])["route"] for k in scrapes[leader] if k[:1] == key}
    assert route in routes and "/v1/jobs/{id}/ack" in routes
    assert not any(r.startswith("/v1/jobs/") and "{id}" not in r for r in routes)


def _raftq(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftq", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_status_json_matches_get_cluster(jc: Cluster) -> None:
    nodes = ",".join(jc.api[n] for n in jc.ids)
    r = _raftq("status", "--nodes", nodes, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["nodes"]
    assert [row["id"] for row in rows] == jc.ids
    for row in rows:
        status, fresh = http_json(jc.url(row["id"], "/v1/cluster"))
        assert status == 200
        seen = row["cluster"]
        # The same document, read a moment earlier: identical but for indexes and clock,
        # which only move forward (ticks keep committing entries).
        assert seen["self"]["id"] == fresh["self"]["id"] == row["id"]
        for k in ("role", "term"):
            assert seen["self"][k] == fresh["self"][k] == row[k]
        assert seen["leader"] == fresh["leader"] == row["leader"]
        assert seen["nodes"] == fresh["nodes"]
        for k in ("commit_index", "applied_index"):
            assert row[k] == seen["self"][k] <= fresh["self"][k]
        assert row["reachable"] is True and isinstance(row["lag"], int) and row["lag"] >= 0
    r = _raftq("status", "--nodes", nodes)
    assert r.returncode == 0
    header, *lines = r.stdout.splitlines()
    assert header.split()[:7] == ["NODE", "API", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG"]
    assert sum("leader" in line.split()[2] for line in lines) == 1


def test_top_json_shows_queues_and_rates(jc: Cluster) -> None:
    with _client(jc) as client:
        client.enqueue_many("top", [{"payload": i} for i in range(3)])
    jc.wait_converged()
    nodes = ",".join(jc.api[n] for n in jc.ids)
    r = _raftq("top", "--nodes", nodes, "--json", "--iterations", "2", "--interval-ms", "200")
    assert r.returncode == 0, r.stderr
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    q1 = next(q for q in first["queues"] if q["queue"] == "top")
    q2 = next(q for q in second["queues"] if q["queue"] == "top")
    assert q1["depth"]["queued"] == 3 and q1["totals"]["enqueued"] == 3
    assert q1["rates"]["enqueued"] is None  # no earlier reading
    assert q2["rates"]["enqueued"] == 0.0  # nothing enqueued between the two readings
    assert second["cluster"]["leader"] in jc.ids
    r = _raftq("top", "--nodes", nodes, "--iterations", "1")
    assert r.returncode == 0 and "top" in r.stdout and "ENQ/s" in r.stdout


def test_json_logs_carry_node_and_request_id_and_one_audit_line(jc: Cluster) -> None:
    follower = jc.followers()[0]
    status, _ = http_json(jc.url(follower, "/v1/queues/audited/pause"), body={}, method="POST")
    assert status == 200
    deadline = time.monotonic() + 10
    audits: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        lines = {nid: _json_lines(jc, nid) for nid in jc.ids}
        audits = [
            (nid, line)  # type: ignore[misc]
            for nid, ls in lines.items()
            for line in ls
            if line.get("audit") == "pause" and line.get("queue") == "audited"
        ]
        if audits:
            break
        time.sleep(0.1)
    for nid, ls in lines.items():
        assert ls, f"{nid} logged nothing"
        assert all(line["node"] == nid for line in ls), nid
    # Exactly one line, by the leader (which executed it), naming the client, in a request.
    assert len(audits) == 1, audits
    nid, line = audits[0]  # type: ignore[misc]
    assert nid == jc.leader()
    assert line["logger"] == "raftq.audit" and line["who"] == "127.0.0.1"
    assert line["request_id"]


def _json_lines(c: Cluster, nid: str) -> list[dict[str, Any]]:
    text = (c.root / f"{nid}.log").read_text(errors="replace")
    out = []
    for raw in text.splitlines():
        if raw.strip():
            out.append(json.loads(raw))  # every line must be JSON
    return out


# -- the dashboard, in a real browser --------------------------------------------------------


def _require_chromium() -> None:
    if browser.chromium_path() is not None:
        return
    # Never skipped: `make test` installs it (.ci/system-deps).
    pytest.fail("chromium is not installed (apt-get install chromium); make test installs it")


_PAGE_QUEUES = """
[...document.querySelectorAll('#queues tr[data-queue]')].map(tr => ({
  queue: tr.dataset.queue,
  depth: Object.fromEntries([...tr.querySelectorAll('td[data-state]')]
                            .map(td => [td.dataset.state, Number(td.textContent)]))}))
"""
_PAGE_NODES = """
[...document.querySelectorAll('#cluster tr[data-node]')].map(tr =>
  [...tr.children].map(td => td.textContent))
"""


async def test_dashboard_in_headless_chromium(jc: Cluster, tmp_path: Path) -> None:
    _require_chromium()
    follower = jc.followers()[0]
    with _client(jc) as client:
        client.enqueue_many("web", [{"payload": i, "priority": i % 10} for i in range(7)])
        for job in client.claim(["web"], worker="w-web", max=2):
            client.ack(job.id, job.token)
        poison = client.enqueue_many("poison", [{"payload": "x", "max_attempts": 1}] * 2)
        for job in client.claim(["poison"], worker="w-poison", max=2):
            client.nack(job.id, job.token, error="boom")
        client.set_schedule("web-minutely", "ticks", "tick", cron="* * * * *", tz="Europe/Berlin")
        client.trigger_schedule("web-minutely")
    jc.wait_converged()  # every node has applied all of the above: any node's reads agree
    with _client(jc) as client:
        api_queues = {q["queue"]: q for q in client.queues()}
    assert api_queues["poison"]["depth"]["dead"] == 2
    async with browser.launch(tmp_path / "profile", width=1280, height=1000) as page:
        # Served by a follower: the requeue below is forwarded to the leader.
        await page.goto(f"http://{jc.api[follower]}/?refresh_ms=500")
        await page.wait_for("Number(document.body.dataset.refreshes || 0) >= 1")
        await page.wait_for("document.querySelectorAll('#queues tr[data-queue]').length >= 2")
        shown = {q["queue"]: q["depth"] for q in await page.eval(_PAGE_QUEUES)}
        for name in ("web", "poison"):
            expected = {
                k: api_queues[name]["depth"][k]
                for k in ("queued", "delayed", "leased", "succeeded", "dead", "cancelled")
            }
            assert shown[name] == expected, (name, shown[name], expected)
        nodes = await page.eval(_PAGE_NODES)
        assert [row[0] for row in nodes] == jc.ids
        assert [row[1] for row in nodes].count("leader") == 1
        assert all(row[6] == "yes" for row in nodes)
        await page.wait_for(f"!!document.querySelector('[data-dead-job=\"{poison[0]}\"]')")
        # The schedules panel: last fire (the trigger) and next fire shown.
        row = "document.querySelector('#schedules tr[data-schedule=web-minutely]"
        await page.wait_for(f"!!{row} td[data-fire=next]') && {row} td[data-fire=last]')"
                            ".textContent !== '-'")  # fmt: skip
        # Chart: a second reading draws the series.
        await page.wait_for("!!document.querySelector('#chart polyline[data-series=enqueued]')")
        await page.eval(
            f'document.querySelector(\'button[data-requeue="poison"][data-job="{poison[0]}"]\')'
            ".click(), true"
        )
        await page.wait_for(
            "document.getElementById('message').textContent.includes('requeued 1 job(s)')"
        )
        jc.wait_converged()
        with _client(jc) as client:
            q = client.queue("poison")
        assert (q["depth"]["dead"], q["depth"]["queued"]) == (1, 1)
        assert q["totals"]["requeued"] == 1
        await page.wait_for(
            "document.querySelector('#queues tr[data-queue=poison] td[data-state=dead]')"
            ".textContent === '1'"
        )
        # A job's dependencies and a batch's counts, through the lookup form.
        with _client(jc) as client:
            made = client.create_batch(
                [{"payload": 1}, {"payload": 2, "depends_on": ["@0"]}], queue="flow"
            )
        jc.wait_converged()
        await page.eval(
            "document.getElementById('lookup-kind').value = 'batches',"
            f"document.getElementById('lookup-id').value = '{made['batch']}',"
            "document.getElementById('lookup').requestSubmit(), true"
        )
        await page.wait_for(
            "document.getElementById('lookup-out').textContent.includes('waiting1')"
        )
        await page.eval(
            "document.getElementById('lookup-kind').value = 'jobs',"
            f"document.getElementById('lookup-id').value = '{made['ids'][1]}',"
            "document.getElementById('lookup').requestSubmit(), true"
        )
        await page.wait_for(
            "document.getElementById('lookup-out').textContent"
            f".includes('dependencies{made['ids'][0]} pending')"
        )
        # Some traffic for the rates and the chart: a few rounds across several refreshes.
        for _ in range(4):
            with _client(jc) as client:
                client.enqueue_many("web", [{"payload": "t", "priority": 5}] * 6)
                for job in client.claim(["web"], worker="w-web", max=4):
                    client.ack(job.id, job.token)
            await asyncio.sleep(0.4)
        jc.wait_converged()
        with _client(jc) as client:
            web = client.queue("web")["depth"]
        await page.wait_for(
            "document.querySelector('#queues tr[data-queue=web] td[data-state=succeeded]')"
            f".textContent === '{web['succeeded']}'"
        )
        await page.wait_for("!!document.querySelector('#chart polyline[data-series=completed]')")
        png = await page.screenshot()
        assert not [m for m in page.console if m.startswith("uncaught")], page.console
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / "dashboard.png").write_bytes(png)  # the test artifact
    target = os.environ.get("RAFTQ_DASHBOARD_PNG")  # set by `make dashboard-screenshot`
    if target:
        shutil.copy(tmp_path / "dashboard.png", target)


def test_every_metric_is_documented_and_the_docs_name_only_real_ones(jc: Cluster) -> None:
    import re  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    with _client(jc) as client:  # a queue with a finished job and a live lease
        client.enqueue_many("doc", [{"payload": 1}, {"payload": 2}])
        first, _ = client.claim(["doc"], worker="w-doc", max=2)
        client.ack(first.id, first.token)
        client.set_schedule("doc-hourly", "doc", 1, every_ms=3_600_000)  # schedule metrics
    jc.wait_converged()
    with urllib.request.urlopen(jc.url(jc.ids[0], "/metrics"), timeout=5) as resp:
        text = resp.read().decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    sample_names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "metrics.md").read_text()
    grafana = (root / "docs" / "grafana" / "raftq.json").read_text()
    json.loads(grafana)
    documented = set(re.findall(r"`(raftq_[a-z_]+)`", doc))
    # prometheus-client's own `<name>_created` timestamps of counters and histograms aside.
    ours = {f for f in families if f.startswith("raftq_") and not f.endswith("_created")}
    # Counters are documented by their sample name (`raftq_jobs_total`).
    names = {n for n in sample_names if n.startswith("raftq_")}
    for family in ours:
        assert family in documented or f"{family}_total" in documented, family
    referenced = set(re.findall(r"\b(raftq_[a-z_]+)", doc + grafana))
    absent_until_first_snapshot = {"raftq_raft_snapshot_size_bytes"}
    for name in referenced - absent_until_first_snapshot:
        assert name in names or name in families, f"docs name {name}, which no node exports"
