"""The queue of a job named in the path is decided where the answer is made, on real nodes.

A caller limited to ``a*`` names the next job id while the enqueue that creates it, in queue
``b.q``, is in the leader's log but not committed: both followers are SIGSTOPped, so the leader
cannot commit, and its applied state does not know the job yet. The test observes that the
enqueue was proposed (the leader's ``raftq_raft_group_commit_batch_commands_count``), sends the
attack, observes that it reached the log too (a proposal: the attack itself before the fix, the
check's barrier after it), then resumes the followers. Before the fix, the unknown job was
"allowed" and the cancel, applied right after the enqueue, cancelled the other queue's job (and
a linearizable read returned it); now both get 403 and the job is untouched.

The followers' election timeout (3 s at least) is longer than the pause, so they take the
leader's entries when they resume instead of starting an election; ticks are one a minute, so
no tick occupies the leader's pipeline (two entries in flight) during the pause.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.cluster import Cluster, tokens_toml

TOKENS = {
    "admin": ("admin", "tok-admin-0123456789", '["*"]'),
    "producer": ("producer", "tok-a-producer-0123456789", '["a*"]'),
    "reader": ("reader", "tok-a-reader-0123456789", '["a*"]'),
}
ELECTION_MIN_MS = 3_000  # PySyncObj wants the maximum within its 3.5 s connection timeout
RAFT = f"election_min_ms = {ELECTION_MIN_MS}\nelection_max_ms = 3500\ntick_interval_ms = 60000"
PAUSE_MAX_MS = 2_500  # below the election timeout, with room for the followers to resume


def call(  # noqa: PLR0917  # reads like the request line it sends
    c: Cluster, nid: str, method: str, path: str, who: str, body: Any = None
) -> Any:
    """``(status, decoded body)`` of one request with ``who``'s token."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(c.url(nid, path), data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {TOKENS[who][1]}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def proposed(c: Cluster, nid: str) -> int:
    """Log entries ``nid`` proposed so far (its group commit's entry count)."""
    status, text = call(c, nid, "GET", "/metrics", "admin")
    assert status == 200, text
    for line in text.splitlines():
        if line.startswith("raftq_raft_group_commit_batch_commands_count"):
            return int(float(line.split()[-1]))
    raise AssertionError("no raftq_raft_group_commit_batch_commands_count in /metrics")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def slow_elections(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.generate(
        tmp_path_factory.mktemp("job-race"), extra_raft=RAFT, extra=tokens_toml(TOKENS)
    )
    c.headers = {"Authorization": f"Bearer {TOKENS['admin'][1]}"}
    with c:
        c.wait_ready(60)
        yield c


def _race(c: Cluster, attack: Callable[[str, int], Any]) -> tuple[int, Any, Any]:
    """Enqueue a job of ``b.q`` on the leader while its followers are stopped, and send
    ``attack(leader, id)`` naming that job's id before the enqueue commits. Returns the
    job's id, the attack's ``(status, body)`` and the enqueue's."""
    leader = c.wait_ready(60)
    status, body = call(c, leader, "POST", "/v1/queues/a.q/jobs", "admin", {"payload": 0})
    assert status == 201, body
    next_id = body["id"] + 1  # ids are sequential: the attacker can guess the next one
    c.wait_converged()  # nothing in flight: the pipeline has room for both entries
    before = proposed(c, leader)
    followers = [n for n in c.ids if n != leader]
    with ThreadPoolExecutor(2) as pool:
        enqueue: Future[Any]
        stopped_at = time.monotonic()
        for nid in followers:
            c.kill(nid, signal.SIGSTOP)
        try:
            enqueue = pool.submit(
                call, c, leader, "POST", "/v1/queues/b.q/jobs", "admin", {"payload": "b's"}
            )
            wait_for("the enqueue's proposal", lambda: proposed(c, leader) >= before + 1)
            attacked = pool.submit(attack, leader, next_id)
            wait_for("the attack's proposal", lambda: proposed(c, leader) >= before + 2)
            paused_ms = (time.monotonic() - stopped_at) * 1000
        finally:
            for nid in followers:
                c.kill(nid, signal.SIGCONT)
        # Longer than the followers' election timeout, they could have started an election
        # and dropped the leader's uncommitted entries: the race would not be what was tested.
        assert paused_ms < PAUSE_MAX_MS, f"paused {paused_ms:.0f} ms: machine too slow"
        result = attacked.result(60)
        enqueued = enqueue.result(60)
    assert enqueued[0] == 201 and enqueued[1]["id"] == next_id, enqueued
    return next_id, result, enqueued


def test_cancel_of_a_job_whose_enqueue_is_in_flight_is_refused(slow_elections: Cluster) -> None:
    c = slow_elections

    def cancel(leader: str, job_id: int) -> Any:
        return call(c, leader, "POST", f"/v1/jobs/{job_id}/cancel", "producer", {})

    job_id, (status, body), _ = _race(c, cancel)
    assert status in (403, 404), body
    assert body["error"]["code"] in ("forbidden", "not_found"), body
    status, job = call(c, c.leader(), "GET", f"/v1/jobs/{job_id}", "admin")
    assert status == 200 and (job["queue"], job["state"]) == ("b.q", "queued"), job


def test_linearizable_read_of_a_job_whose_enqueue_is_in_flight_is_refused(
    slow_elections: Cluster,
) -> None:
    c = slow_elections

    def read(leader: str, job_id: int) -> Any:
        return call(c, leader, "GET", f"/v1/jobs/{job_id}?consistency=linearizable", "reader")

    _, (status, body), _ = _race(c, read)
    assert status in (403, 404), body
    assert body["error"]["code"] in ("forbidden", "not_found"), body
    assert "b's" not in json.dumps(body)
