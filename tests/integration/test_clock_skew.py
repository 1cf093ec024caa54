"""One node's wall clock hours off (libfaketime), and a whole-cluster restart after downtime:
cluster time follows real time, within ``raft.clock_max_step_ms`` (raftq/raft/cluster_clock.py).

Real ``raftq serve`` processes; the skewed node runs under libfaketime (``.ci/system-deps``
installs it) with ``FAKETIME="+21600"``: its wall clock (and monotonic clock, by the same
constant) six hours off from process start. Requests go to the node being tested directly,
except in the test of forwarding to and from that node.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cluster import Cluster, http_json

pytestmark = pytest.mark.slow

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
HOUR_S = 3_600
STEP_MS = 1_000  # raft.clock_max_step_ms, the default
SKEWED = "n1"


def _faketime(offset_s: int) -> dict[str, str]:
    return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{offset_s:+d}"}


def _call(c: Cluster, nid: str, path: str, body: Any = None, *, ok: int = 200) -> Any:
    """``path`` on ``nid``, retrying 503s (elections, cluster time settling) for 15 s."""
    deadline = time.monotonic() + 15
    while True:
        status, answer = http_json(c.url(nid, path), body)
        if status != 503 or time.monotonic() > deadline:
            assert status == ok, (nid, path, status, answer, c.log_tail(nid))
            return answer
        time.sleep(0.1)


def _enqueue(c: Cluster, nid: str, queue: str, **fields: Any) -> int:
    answer = _call(c, nid, f"/v1/queues/{queue}/jobs", {"payload": queue, **fields}, ok=201)
    return int(answer["ids"][0]) if "ids" in answer else int(answer["id"])


def _claim(c: Cluster, nid: str, queue: str, lease_ms: int) -> list[dict[str, Any]]:
    body = {"worker": f"w-{queue}", "lease_ms": lease_ms, "wait_ms": 0}
    return list(_call(c, nid, f"/v1/queues/{queue}/claim", body)["jobs"])


def _claim_within(c: Cluster, nid: str, queue: str, seconds: float) -> float:
    """Seconds until a job of ``queue`` can be claimed on ``nid`` (fails after ``seconds``)."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if _claim(c, nid, queue, 60_000):
            return time.monotonic() - began
        time.sleep(0.2)
    view = c.view(nid)
    raise AssertionError(f"no {queue} job within {seconds} s; {nid}: {view}\n{c.log_tail(nid)}")


def _cluster_ahead_ms(c: Cluster, nid: str) -> int:
    """Cluster time on ``nid`` minus real time (this process runs on the real clock)."""
    view = c.view(nid)
    assert view is not None
    return int(view["self"]["clock_ms"]) - time.time_ns() // 1_000_000


def _lead_with(c: Cluster, nid: str) -> None:
    """Kill -9 and restart the leader until ``nid`` is elected."""
    for _ in range(12):
        leader = c.leader()
        if leader == nid:
            return
        c.kill(leader)
        c.leader(among=[n for n in c.ids if n != leader])
        c.start(leader)
        c.wait_ready()
    raise AssertionError(f"{nid} never became leader")


def _cluster(tmp_path: Path, skew_s: int) -> Cluster:
    if not Path(FAKETIME_LIB).exists():
        raise AssertionError(f"{FAKETIME_LIB} missing: run .ci/system-deps (libfaketime)")
    c = Cluster.generate(tmp_path)
    c.env[SKEWED] = _faketime(skew_s)
    return c


def test_a_leader_six_hours_ahead_ends_no_lease_and_time_goes_on_after_it(
    tmp_path: Path,
) -> None:
    with _cluster(tmp_path, +6 * HOUR_S) as c:
        c.wait_ready()
        leader = c.leader()
        _enqueue(c, leader, "live")
        _enqueue(c, leader, "dead")
        [live] = _claim(c, leader, "live", 30_000)  # a worker holds a lease...
        _lead_with(c, SKEWED)  # ...while the node six hours ahead becomes leader
        for _ in range(4):  # its Ticks pass: the lease is not ended, heartbeats work
            time.sleep(0.5)
            _call(c, SKEWED, f"/v1/jobs/{live['id']}/heartbeat", {"token": live["token"]})
        ahead = _cluster_ahead_ms(c, SKEWED)
        assert -2_000 <= ahead <= STEP_MS + 500, f"cluster time {ahead} ms from real time"
        # A worker that dies holding a 3 s lease, and a job delayed by 2 s.
        assert _claim(c, SKEWED, "dead", 3_000)
        _enqueue(c, SKEWED, "delayed", delay_ms=2_000)
        # A correct leader takes over: cluster time is not frozen six hours ahead.
        c.kill(SKEWED)
        leader = c.leader(among=[n for n in c.ids if n != SKEWED])
        assert _claim_within(c, leader, "dead", 10) < 10  # the dead worker's lease expired
        assert _claim_within(c, leader, "delayed", 10) < 10
        assert abs(_cluster_ahead_ms(c, leader)) <= STEP_MS + 1_000
        _call(c, leader, f"/v1/jobs/{live['id']}/heartbeat", {"token": live["token"]})


def test_a_leader_six_hours_behind_never_freezes_cluster_time(tmp_path: Path) -> None:
    with _cluster(tmp_path, -6 * HOUR_S) as c:
        c.wait_ready()
        _lead_with(c, SKEWED)
        _enqueue(c, SKEWED, "dead")
        before = _cluster_ahead_ms(c, SKEWED)
        assert _claim(c, SKEWED, "dead", 2_000)  # its worker dies at once
        _enqueue(c, SKEWED, "delayed", delay_ms=2_000)
        waited = _claim_within(c, SKEWED, "dead", 10)  # the lease expires in cluster time
        assert 1 <= waited < 10
        assert _claim_within(c, SKEWED, "delayed", 10) < 10
        after = _cluster_ahead_ms(c, SKEWED)
        assert -2_000 <= before <= STEP_MS and -2_000 <= after <= STEP_MS, (before, after)
        assert c.leader() == SKEWED  # all of it under the skewed leader


def test_a_whole_cluster_restart_after_downtime_makes_delayed_jobs_due(tmp_path: Path) -> None:
    """Every node restarted two hours "later" (libfaketime +2 h on all): a job delayed by one
    hour is due at once, and cluster time is the nodes' time, not the state's on disk."""
    c = Cluster.generate(tmp_path)
    with c:
        leader = c.wait_ready()
        _enqueue(c, leader, "later", delay_ms=HOUR_S * 1000)
        assert not _claim(c, leader, "later", 60_000)
        c.wait_converged()
        c.stop()
        for nid in c.ids:
            c.env[nid] = _faketime(2 * HOUR_S)
        c.start()
        leader = c.wait_ready()
        assert _claim_within(c, leader, "later", 10) < 10
        ahead = _cluster_ahead_ms(c, leader) - 2 * HOUR_S * 1000
        assert -2_000 <= ahead <= STEP_MS + 500, f"cluster time {ahead} ms from the nodes'"


@pytest.mark.parametrize("skew_s", [+6 * HOUR_S, -6 * HOUR_S])
def test_forwards_to_and_from_a_node_six_hours_off_are_accepted(
    tmp_path: Path, skew_s: int
) -> None:
    """Bug fixed: node-to-node signatures were timed by wall clocks and refused more than 30 s
    apart, so every write sent through a follower to a leader hours off answered ``401 ...
    signature expired``. They carry cluster time now (``raftq.server.peer_auth``)."""
    with _cluster(tmp_path, skew_s) as c:
        c.wait_ready()
        _lead_with(c, SKEWED)
        followers = [n for n in c.ids if n != SKEWED]
        for nid in followers:  # through a correct follower to the skewed leader
            _enqueue(c, nid, f"via-{nid}")
        c.kill(SKEWED)
        leader = c.leader(among=followers)
        c.start(SKEWED)
        c.wait_ready()
        assert c.leader() == leader
        _enqueue(c, SKEWED, "via-skewed")  # through the skewed follower to a correct leader
        for queue in [*(f"via-{n}" for n in followers), "via-skewed"]:
            assert len(_claim(c, leader, queue, 60_000)) == 1, queue
