"""A real 3-node cluster: requests through any node, priorities, fencing, bad input."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from raftq.client import SyncClient
from raftq.errors import Rejected
from tests.integration.cluster import Cluster, http_json


def test_enqueue_on_follower_claim_on_other_follower_ack_on_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    f1, f2 = cluster.followers()
    with (
        SyncClient([cluster.api[f1]]) as c1,
        SyncClient([cluster.api[f2]]) as c2,
        SyncClient([cluster.api[leader]]) as cl,
    ):
        job_id = c1.enqueue("mail", {"to": "a@example.com"})
        jobs = c2.claim("mail", worker="w2")
        assert [j.id for j in jobs] == [job_id]
        assert jobs[0].payload == {"to": "a@example.com"}
        cl.ack(job_id, jobs[0].token, result={"sent": True})
        info = c1.get_job(job_id, linearizable=True)
        assert info["state"] == "succeeded"
        assert info["result"] == {"sent": True}
    cluster.wait_converged()


def test_strict_priority_across_nodes(cluster: Cluster) -> None:
    f1, f2 = cluster.followers()
    with SyncClient([cluster.api[f1]]) as c1, SyncClient([cluster.api[f2]]) as c2:
        ids = {p: c1.enqueue("prio", {"p": p}, priority=p) for p in (0, 5, 9, 3, 9)}
        del ids
        got = []
        for _ in range(5):
            (job,) = c2.claim("prio", worker="w")
            got.append(job.priority)
        assert got == [9, 9, 5, 3, 0]


def test_stale_token_refused_from_every_node(cluster: Cluster) -> None:
    with SyncClient([cluster.api[n] for n in cluster.ids]) as c:
        job_id = c.enqueue("fence", "x")
        (first,) = c.claim("fence", worker="slow", lease_ms=300)
        time.sleep(0.6)  # the lease ends in cluster time; the next claim re-leases it
        (second,) = c.claim("fence", worker="fast", wait_ms=3000)
        assert second.id == job_id and second.token > first.token
    for nid in cluster.ids:
        with SyncClient([cluster.api[nid]]) as c, pytest.raises(Rejected) as err:
            c.ack(job_id, first.token)
        assert err.value.status == 409
    with SyncClient([cluster.api[cluster.ids[0]]]) as c:
        c.ack(job_id, second.token)
        assert c.get_job(job_id, linearizable=True)["state"] == "succeeded"


BAD_REQUESTS = [
    ("POST", "/v1/queues/q/jobs", b"{not json"),
    ("POST", "/v1/queues/q/jobs", b"[]"),
    ("POST", "/v1/queues/q/jobs", b'{"payload": 1, "priority": "high"}'),
    ("POST", "/v1/queues/q/jobs", b'{"payload": 1, "priority": 10}'),
    ("POST", "/v1/queues/q/jobs", b'{"payload": 1, "priority": true}'),
    ("POST", "/v1/queues/q/jobs", b'{"payload": 1, "delay_ms": -5}'),
    ("POST", "/v1/queues/q/jobs", b'{"payload": 1, "surprise": 1}'),
    ("POST", "/v1/queues/bad%20name!/jobs", b'{"payload": 1}'),
    ("POST", "/v1/queues/" + "x" * 200 + "/jobs", b'{"payload": 1}'),
    ("POST", "/v1/queues/q/claim", b'{"max": 5}'),
    ("POST", "/v1/queues/q/claim", b'{"worker": "w", "max": -1}'),
    ("POST", "/v1/jobs/abc/ack", b'{"token": 1}'),
    ("POST", "/v1/jobs/1/ack", b'{"token": "x"}'),
    ("GET", "/v1/jobs/-3", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_bad_input_is_a_clear_4xx_and_the_node_keeps_serving(
    shared_cluster: Cluster, method: str, path: str, body: bytes | None
) -> None:
    cluster = shared_cluster
    for nid in cluster.ids:
        req = urllib.request.Request(cluster.url(nid, path), data=body, method=method)
        req.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert 400 <= err.value.code < 500, (nid, err.value.code)
        error = json.loads(err.value.read())["error"]
        err.value.close()
        assert error["code"] and error["message"]
    status, _ = http_json(cluster.url(cluster.ids[0], "/healthz"))
    assert status == 200


def test_huge_payload_and_malformed_msgpack(shared_cluster: Cluster) -> None:
    cluster = shared_cluster
    nid = cluster.followers()[0]
    big = b'{"payload": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for body, ctype, expected in (
        (big, "application/json", 413),
        (b"\xc1\xc1\xc1", "application/msgpack", 400),
        (b"\x92\x01", "application/msgpack", 400),
    ):
        req = urllib.request.Request(cluster.url(nid, "/v1/queues/q/jobs"), data=body)
        req.add_header("Content-Type", ctype)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == expected
        err.value.close()
    with SyncClient([cluster.api[nid]]) as c:
        assert c.enqueue("q", "still fine") > 0
    with SyncClient([cluster.api[nid]]) as c, pytest.raises(Rejected) as nf:
        c.get_job(10**9)
    assert nf.value.status == 404


def _batch_histogram(cluster: Cluster, nid: str) -> tuple[float, float]:
    """(entries proposed with one command, entries proposed) on node ``nid``."""
    with urllib.request.urlopen(cluster.url(nid, "/metrics"), timeout=5) as r:
        text = r.read().decode()
    one = total = 0.0
    for line in text.splitlines():
        if line.startswith('raftq_raft_group_commit_batch_commands_bucket{le="1.0"}'):
            one = float(line.rsplit(" ", 1)[1])
        elif line.startswith("raftq_raft_group_commit_batch_commands_count"):
            total = float(line.rsplit(" ", 1)[1])
    return one, total


def test_a_waiting_claim_rides_in_the_enqueues_log_entry(tmp_path) -> None:
    """An enqueue of a ready job proposed while a long-poll claim waits on its queue takes
    the claim along into the same log entry: the job reaches the worker after one commit.
    Both requests go through followers (forwarded to the leader, where the claim waits). The
    leader's tick is slowed down so that nothing else is proposed meanwhile."""
    with Cluster.generate(tmp_path, extra_raft="tick_interval_ms = 60000") as c:
        c.wait_ready()
        leader = c.leader()
        f1, f2 = c.followers()
        got: list[list[int]] = []
        with SyncClient([c.api[f1]]) as worker, SyncClient([c.api[f2]]) as producer:
            producer.enqueue("warm", 1)  # the queue path and connections are warm
            one0, total0 = _batch_histogram(c, leader)
            poll = threading.Thread(
                daemon=True,  # a failed test must not leave pytest waiting on it
                target=lambda: got.append(
                    [j.id for j in worker.claim("handoff", worker="w", wait_ms=20_000)]
                ),
            )
            poll.start()
            time.sleep(2.0)  # the claim reaches the leader and waits there
            assert _batch_histogram(c, leader) == (one0, total0), "nothing proposed meanwhile"
            job_id = producer.enqueue("handoff", {"n": 1})
            poll.join(timeout=15)
            assert got == [[job_id]]
            one1, total1 = _batch_histogram(c, leader)
        # One entry since the start: the enqueue with the waiting claim (two commands). Without
        # the hand-off: two one-command entries (the enqueue, then the woken claim's round).
        assert (total1 - total0, one1 - one0) == (1, 0)
