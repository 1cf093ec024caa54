"""``raftq node drain`` and ``POST /v1/cluster/leader`` on three real ``raftq serve`` processes:
a drained leader hands leadership over in one election (term + 1), its process exits 0, and
every acknowledged job is on the new leader; a drained follower exits 0 with the leader
unchanged; ``raftq upgrade status`` lists each node's release and log version."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from raftq._version import __version__
from raftq.core.codec import LOG_VERSION
from tests.integration.cluster import Cluster, http_json

REPO = Path(__file__).resolve().parents[2]


def _raftq(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftq", *args, "--config", str(c.config_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=c.root,
    )


def _term(c: Cluster, nid: str) -> int:
    view = c.view(nid)
    assert view is not None
    term: int = view["self"]["term"]
    return term


def test_draining_the_leader_then_a_follower(tmp_path: Path) -> None:
    with Cluster.generate(tmp_path) as c:
        old = c.wait_ready()
        ids = []
        for i in range(5):
            status, body = http_json(c.url(old, "/v1/queues/q/jobs"), {"payload": i})
            assert status == 201, body
            ids.append(body["id"])
        term = _term(c, old)

        # Each node's release and log version, as a rolling upgrade checks them.
        up = _raftq(c, "upgrade", "status")
        assert up.returncode == 0, (up.stdout, up.stderr)
        lines = up.stdout.splitlines()
        assert [line.split()[0] for line in lines] == c.ids
        assert all(
            f"raftq {__version__}  log version {LOG_VERSION}  enabled {LOG_VERSION}  " in line
            for line in lines
        )

        # Log version 2 is enabled once every node says it applies it; not above this release's.
        status, body = http_json(c.url(old, "/v1/cluster/version"), {"version": LOG_VERSION + 1})
        assert status == 409 and body["error"]["code"] == "version_not_supported", body
        enable = _raftq(c, "upgrade", "enable")
        assert enable.returncode == 0, (enable.stdout, enable.stderr)
        assert enable.stdout.strip() == f"log version {LOG_VERSION} enabled"
        view = c.view(old)
        assert view is not None and view["self"]["enabled_version"] == LOG_VERSION

        # Leadership moves by request first, to a named node, answered once it moved.
        target = next(n for n in c.ids if n != old)
        status, body = http_json(c.url(old, "/v1/cluster/leader"), {"to": target})
        assert status == 200, body
        assert body["leader"] == target and body["previous"] == old
        assert c.leader() == target and _term(c, target) == term + 1

        drained = c.drain(target)
        assert drained.returncode == 0, (drained.stdout, drained.stderr, c.log_tail(target))
        assert f"node {target} drained and stopped" in drained.stdout
        assert c.procs[target].wait(30) == 0  # the process itself exited 0
        rest = [n for n in c.ids if n != target]
        new = c.leader(among=rest)
        # A version is enabled only with every node asked: the drained one does not answer.
        status, body = http_json(c.url(new, "/v1/cluster/version"), {"version": LOG_VERSION})
        assert status == 409 and f"node {target} did not answer" in body["error"]["message"]
        assert _term(c, new) == term + 2  # one election per handover, none more
        for job_id in ids:
            status, job = http_json(c.url(new, f"/v1/jobs/{job_id}?consistency=linearizable"))
            assert status == 200 and job["state"] == "queued", job

        follower = next(n for n in rest if n != new)
        drained = c.drain(follower)
        assert drained.returncode == 0, (drained.stdout, drained.stderr)
        assert c.procs[follower].wait(30) == 0
        assert c.view(new)["self"]["role"] == "leader"  # type: ignore[index]
        assert _term(c, new) == term + 2
