"""Membership changes on real processes (issue 19): grow and shrink under load, replace the
leader's node, wipe a follower, a change refused for quorum, a change racing an election, and
the edit-the-TOML-and-roll path that used to make two majorities.

Each checks that no acknowledged enqueue was lost, no job completed twice (the load's ledger,
``tests/integration/load.py``) and that the voters end on one digest.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raftq.node.spawn import serve_argv, start_node
from tests.integration.cluster import Cluster, free_ports, http_json
from tests.integration.load import Load, check_ledger


def _grow_config(cluster: Cluster, extra: int) -> Path:
    """A copy of ``cluster``'s config with ``extra`` more nodes (``n4``, ...), registered in
    ``cluster`` (not started)."""
    ports = free_ports(2 * extra)
    text = cluster.config_path.read_text()
    for i in range(extra):
        nid = f"n{len(cluster.ids) + 1}"
        raft, api = f"127.0.0.1:{ports[i]}", f"127.0.0.1:{ports[extra + i]}"
        text += f'\n[[nodes]]\nid = "{nid}"\nraft = "{raft}"\napi = "{api}"\n'
        cluster.ids.append(nid)
        cluster.raft[nid], cluster.api[nid] = raft, api
    path = cluster.root / "grown.toml"
    path.write_text(text)
    return path


def _start(cluster: Cluster, nid: str, config: Path, *extra: str) -> None:
    """Start ``nid`` of ``cluster`` from ``config`` (``extra``: more ``serve`` arguments)."""
    log = open(cluster.root / f"{nid}.log", "ab")  # noqa: SIM115  # owned by the process
    cluster.procs[nid] = start_node(
        serve_argv(config, nid, extra=[*cluster.log_args, *extra]), stdout=log, cwd=cluster.root
    )
    log.close()


def _until(condition: Callable[[], bool], timeout_s: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout_s:g} s; logs:\n{cluster._all_logs()}"
            )
        time.sleep(0.05)


def _voters(cluster: Cluster, nid: str) -> list[str] | None:
    """The voters' ids as ``nid`` knows them (None if it does not answer)."""
    view = cluster.view(nid)
    return None if view is None else sorted(m["id"] for m in view["members"])


def _all_see(cluster: Cluster, ids: list[str], voters: list[str]) -> bool:
    return all(_voters(cluster, nid) == sorted(voters) for nid in ids)


def _converged(cluster: Cluster, ids: list[str], timeout_s: float = 30.0) -> None:
    """Every node of ``ids`` reports the same applied index and digest."""
    last: list[Any] = []

    def same() -> bool:
        nonlocal last
        views = [cluster.view(nid) for nid in ids]
        last = [(v["self"]["applied_index"], v["self"]["digest"]) if v else None for v in views]
        return all(last) and len(set(last)) == 1

    _until(same, timeout_s, f"digests of {ids} equal (last {last})", cluster)


def _member_call(cluster: Cluster, nid: str, method: str, path: str, body: Any = None) -> Any:
    return http_json(cluster.url(nid, path), body, method=method, timeout=40)


async def _under_load(cluster: Cluster, apis: list[str], steps: Callable[[Load], Any]) -> Load:
    """Run ``steps(load)`` in a thread while a light load runs on ``apis``; then write once
    more through the load, stop it and return it (its ledger is to be checked)."""
    load = Load(apis, producers=2, workers=1, pause_s=0.02, retry_s=30.0, seed=19)
    async with load:
        await load.wait_acked(20, 30)
        await asyncio.to_thread(steps, load)
        await load.wait_acked(20, 30)  # the cluster takes writes after the changes
    return load


def _check(cluster: Cluster, load: Load, voters: list[str]) -> None:
    _converged(cluster, voters)
    asyncio.run(check_ledger(load.ledger, [cluster.api[n] for n in voters]))
    assert load.ledger.completed, "the workers completed nothing"


def test_editing_the_toml_to_five_and_rolling_the_nodes_loses_nothing(tmp_path: Path) -> None:
    """The issue's failure: the TOML edited to five nodes, the two new ones started, the three
    old ones restarted one at a time under load. Each old node keeps the cluster's three
    voters (and says so); the new ones never become part of it."""
    with Cluster.generate(tmp_path) as cluster:
        cluster.wait_ready()
        old = list(cluster.ids)
        grown = _grow_config(cluster, 2)

        def roll(_load: Load) -> None:
            for nid in ("n4", "n5"):
                _start(cluster, nid, grown)
            for nid in old:
                cluster.kill(nid, signal.SIGTERM)
                cluster.procs[nid].wait(20)
                _start(cluster, nid, grown)
                _until(
                    lambda n=nid: (v := cluster.view(n)) is not None and v["self"]["ready"],
                    30,
                    f"{nid} ready",
                    cluster,
                )

        load = asyncio.run(_under_load(cluster, [cluster.api[n] for n in old], roll))
        for nid in ("n4", "n5"):  # never replicated to: not a voter of anyone's majority
            view = cluster.view(nid)
            assert view is not None and view["self"]["role"] != "leader"
            assert view["self"]["applied_index"] <= 1, f"{nid} was made part of the cluster"
        for nid in old:
            view = cluster.view(nid)
            assert view is not None and view["membership_mismatch"], view
            assert "n4" not in str(_voters(cluster, nid))
            with urllib.request.urlopen(cluster.url(nid, "/metrics"), timeout=5) as resp:
                assert "raftq_config_membership_mismatch 1.0" in resp.read().decode()
            log = (tmp_path / f"{nid}.log").read_text()
            assert log.count("differ from the cluster's membership") == 1
        assert _all_see(cluster, old, old)
        _check(cluster, load, old)


def test_grow_to_five_and_shrink_back_under_load(tmp_path: Path) -> None:
    with Cluster.generate(tmp_path) as cluster:
        cluster.wait_ready()
        old = list(cluster.ids)
        grown = _grow_config(cluster, 2)

        def grow_and_shrink(_load: Load) -> None:
            for nid in ("n4", "n5"):
                _start(cluster, nid, grown, "--join", cluster.api["n1"])
                want = sorted([*old, *cluster.ids[3 : cluster.ids.index(nid) + 1]])
                _until(lambda w=want: _all_see(cluster, old, w), 40, f"{nid} added", cluster)
                _until(
                    lambda n=nid: (v := cluster.view(n)) is not None and v["self"]["ready"],
                    40,
                    f"{nid} caught up",
                    cluster,
                )
            _converged(cluster, cluster.ids)
            for nid in ("n5", "n4"):
                status, answer = _member_call(cluster, "n1", "DELETE", f"/v1/cluster/members/{nid}")
                assert status == 200, answer
                cluster.kill(nid)
            _until(lambda: _all_see(cluster, old, old), 20, "shrunk to three", cluster)

        load = asyncio.run(_under_load(cluster, [cluster.api[n] for n in old], grow_and_shrink))
        _check(cluster, load, old)


def test_replace_the_leader_s_node(tmp_path: Path) -> None:
    """``raftq members replace LEADER n4``: n4 joins and catches up, then the leader hands
    leadership over and is removed; the cluster goes on without it."""
    with Cluster.generate(tmp_path) as cluster:
        leader = cluster.wait_ready()
        grown = _grow_config(cluster, 1)
        keep = [n for n in cluster.ids if n not in (leader, "n4")]

        def replace(_load: Load) -> None:
            _start(cluster, "n4", grown, "--join", cluster.api[keep[0]])
            nodes = ",".join(cluster.api[n] for n in keep)
            cmd = [sys.executable, "-m", "raftq", "members", "replace", leader, "n4"]
            cmd += ["--config", str(grown), "--nodes", nodes, "--timeout-ms", "30000"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            _until(lambda: _all_see(cluster, [*keep, "n4"], [*keep, "n4"]), 20, "replaced", cluster)
            cluster.kill(leader)

        apis = [cluster.api[n] for n in keep]
        load = asyncio.run(_under_load(cluster, apis, replace))
        new_leader = cluster.leader(among=[*keep, "n4"])
        assert new_leader != leader
        _check(cluster, load, [*keep, "n4"])


def test_a_wiped_follower_comes_back_as_a_new_node(tmp_path: Path) -> None:
    with Cluster.generate(tmp_path) as cluster:
        cluster.wait_ready()

        def wipe(_load: Load) -> None:
            victim = cluster.followers()[0]
            cluster.kill(victim)
            shutil.rmtree(tmp_path / "data" / victim)
            cluster.start(victim)
            _until(
                lambda: (v := cluster.view(victim)) is not None and v["self"]["ready"],
                40,
                "caught up",
                cluster,
            )
            log = (tmp_path / f"{victim}.log").read_text()
            assert "new data dir: no vote for a candidate with history" in log
            assert "caught up with the leader; votes normally" in log

        load = asyncio.run(_under_load(cluster, [cluster.api[n] for n in cluster.ids], wipe))
        _check(cluster, load, cluster.ids)


def test_a_change_that_would_leave_no_quorum_is_refused(tmp_path: Path) -> None:
    with Cluster.generate(tmp_path) as cluster:
        leader = cluster.wait_ready()
        down, up = cluster.followers()
        cluster.kill(down)
        body = {"id": "n4", "api": "127.0.0.1:1", "raft": "127.0.0.1:2"}
        status, answer = _member_call(cluster, leader, "POST", "/v1/cluster/members", body)
        assert status == 409, answer
        assert answer["error"]["code"] == "no_quorum"
        assert "only 2 are connected and caught up" in answer["error"]["message"]
        status, answer = _member_call(cluster, up, "DELETE", f"/v1/cluster/members/{up}")
        assert status == 409 and answer["error"]["code"] == "no_quorum", answer
        assert _voters(cluster, leader) == sorted(cluster.ids)


def test_a_change_racing_a_leader_election(tmp_path: Path) -> None:
    """The leader is killed right after the change was posted: the change is either in the
    log the new leader has or not at all, every node ends with the same voters, and the
    joining node (which keeps asking) ends as one of them."""
    with Cluster.generate(tmp_path) as cluster:
        leader = cluster.wait_ready()
        grown = _grow_config(cluster, 1)
        others = [n for n in cluster.ids if n not in (leader, "n4")]

        def race(_load: Load) -> None:
            _start(cluster, "n4", grown, "--join", cluster.api[others[0]])
            body = {"id": "n4", "api": cluster.api["n4"], "raft": cluster.raft["n4"]}
            url = cluster.url(leader, "/v1/cluster/members")
            poster = subprocess.Popen(  # the test's own interpreter
                [sys.executable, "-c", _POST, url, repr(body)], stdout=subprocess.DEVNULL
            )
            time.sleep(0.05)
            cluster.kill(leader)
            poster.wait(60)
            cluster.leader(among=others)
            cluster.start(leader)
            everyone = sorted(cluster.ids)
            _until(
                lambda: _all_see(cluster, everyone, everyone), 60, "n4 a voter everywhere", cluster
            )

        load = asyncio.run(_under_load(cluster, [cluster.api[n] for n in others], race))
        _check(cluster, load, cluster.ids)


_POST = """
import ast, json, sys, urllib.request
url, body = sys.argv[1], ast.literal_eval(sys.argv[2])
req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                             headers={"Content-Type": "application/json"})
try:
    urllib.request.urlopen(req, timeout=30).read()
except Exception:
    pass
"""
