"""Request ids are per caller, on a real 3-node cluster with tokens (issue 17, finding 5).

Bug fixed: the state machine kept one table of request ids for everyone, and ids are not
secret (responses echo them, logs carry them). A worker sending another worker's
``X-Request-Id`` with its own claim got that worker's first answer: a job of a queue its token
may not touch, with its payload and live fencing token. Now the executing node scopes the id
by the token's principal, and the machine refuses another command under a known id (409
``request_id_reused``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.cluster import Cluster, http_json, tokens_toml

TOKENS = {  # name: (role, token, queue patterns)
    "admin": ("admin", "tok-admin-scope-0123456789", '["*"]'),
    "worker-a": ("worker", "tok-worker-a-0123456789", '["a.*"]'),
    "worker-b": ("worker", "tok-worker-b-0123456789", '["b.*"]'),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster.generate(tmp_path_factory.mktemp("rid-scope"), extra=tokens_toml(TOKENS))
    c.headers = {"Authorization": f"Bearer {TOKENS['admin'][1]}"}
    with c:
        c.wait_ready()
        yield c


def post(  # noqa: PLR0917  # reads like the request it sends
    c: Cluster, nid: str, path: str, body: Any, who: str, rid: str | None
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKENS[who][1]}"}
    if rid is not None:
        headers["X-Request-Id"] = rid
    return http_json(c.url(nid, path), body, headers=headers, timeout=15)


def _enqueue(c: Cluster, nid: str, queue: str, payload: Any) -> int:
    status, body = post(c, nid, f"/v1/queues/{queue}/jobs", {"payload": payload}, "admin", None)
    assert status == 201, body
    return int(body["id"])


@pytest.mark.parametrize("via", ["leader", "follower"])
def test_another_principal_reusing_a_request_id_gets_its_own_claim(
    cluster: Cluster, via: str
) -> None:
    leader = cluster.leader()
    nid = leader if via == "leader" else cluster.followers()[0]
    secret = _enqueue(cluster, leader, f"a.secret-{via}", {"card": "4111-A"})
    mine = _enqueue(cluster, leader, f"b.mine-{via}", {"for": "B"})
    rid = f"shared-{via}-1"
    claim = {"worker": "wa", "wait_ms": 0}
    status, a = post(cluster, nid, f"/v1/queues/a.secret-{via}/claim", claim, "worker-a", rid)
    assert status == 200, a
    (a_job,) = a["jobs"]
    assert a_job["id"] == secret and a_job["payload"] == {"card": "4111-A"}

    # B saw A's id (a log line, an echoed header) and sends it with its own claim.
    b_claim = {"worker": "wb", "wait_ms": 0}
    status, b = post(cluster, nid, f"/v1/queues/b.mine-{via}/claim", b_claim, "worker-b", rid)
    assert status == 200, b
    assert [j["id"] for j in b["jobs"]] == [mine], b  # its own job, never A's
    assert b["jobs"][0]["payload"] == {"for": "B"}
    assert b["jobs"][0]["token"] != a_job["token"]
    # The same id once more from B: the same claim (by the other route) replays B's own
    # answer, another claim is refused; A's answer never comes back.
    many = {"queues": [f"b.mine-{via}"], "worker": "wb", "wait_ms": 0}
    status, again = post(cluster, nid, "/v1/claim", many, "worker-b", rid)
    assert status == 200 and again["jobs"] == b["jobs"], again
    many["worker"] = "wb-other"
    status, again = post(cluster, nid, "/v1/claim", many, "worker-b", rid)
    assert status == 409, again
    assert again["error"]["code"] == "request_id_reused"
    assert "4111-A" not in str(again)

    # A's own retry of the same claim still gets its first answer (the point of the ids).
    status, retry = post(cluster, nid, f"/v1/queues/a.secret-{via}/claim", claim, "worker-a", rid)
    assert status == 200 and retry["jobs"] == a["jobs"], retry
    # A's id under another command of A's: refused, nothing applied.
    other = {"worker": "wa-other", "wait_ms": 0}
    status, reused = post(cluster, nid, f"/v1/queues/a.secret-{via}/claim", other, "worker-a", rid)
    assert status == 409 and reused["error"]["code"] == "request_id_reused", reused


def test_an_ack_with_another_principals_id_is_not_answered_from_its_record(
    cluster: Cluster,
) -> None:
    """B acking with A's ack id: before the fix, B got A's ``succeeded`` for a job it never
    acked (its own job stayed leased)."""
    leader = cluster.leader()
    _enqueue(cluster, leader, "a.acks", 1)
    _enqueue(cluster, leader, "b.acks", 2)
    status, a = post(cluster, leader, "/v1/queues/a.acks/claim", {"worker": "wa"}, "worker-a", None)
    assert status == 200, a
    status, b = post(cluster, leader, "/v1/queues/b.acks/claim", {"worker": "wb"}, "worker-b", None)
    assert status == 200, b
    (ja,), (jb,) = a["jobs"], b["jobs"]
    rid = "ack-shared-1"
    path_a, path_b = f"/v1/jobs/{ja['id']}/ack", f"/v1/jobs/{jb['id']}/ack"
    status, acked = post(cluster, leader, path_a, {"token": ja["token"]}, "worker-a", rid)
    assert status == 200, acked
    status, stale = post(cluster, leader, path_b, {"token": jb["token"] + 1000}, "worker-b", rid)
    assert status == 409 and stale["error"]["code"] == "stale_token", stale  # judged on its own
    status, job = http_json(cluster.url(leader, f"/v1/jobs/{jb['id']}"), headers=cluster.headers)
    assert status == 200 and job["state"] == "leased", job
