"""The membership nemeses' planning and bookkeeping, pinned without a cluster: which change
comes next, the spare hosts' configs, the wipe, the reconciliation of the harness's member list
with the leader's, and the checks that follow membership (convergence over the final members,
the membership check) and the five-node tier's section of docs/reliability.md."""

from __future__ import annotations

import asyncio
import json
import random
import tomllib
from pathlib import Path
from typing import Any

import pytest
from raftq_jepsen import nemesis
from raftq_jepsen.checker import judge
from raftq_jepsen.checker.convergence import check_convergence
from raftq_jepsen.checker.membership import check_membership
from raftq_jepsen.hosts import Hosts, NodeProc
from raftq_jepsen.membership import FAULTS, MemberView, members_of, plan_change
from raftq_jepsen.runner import spare_hosts
from raftq_jepsen.tier import KEEP, render, section_marks, write_page
from raftq_jepsen.workload import NodeRef

from tests.chaos.hist import History


def _ids(prefix: int, k: int) -> list[str]:
    return [f"n{prefix + i}" for i in range(k)]


@pytest.mark.parametrize(("members", "spares"), [(3, 2), (4, 1), (5, 0), (5, 2), (3, 0)])
def test_plan_change_stays_within_bounds(members: int, spares: int) -> None:
    m, s = _ids(1, members), _ids(members + 1, spares)
    seen: set[tuple[str, str]] = set()
    for seed in range(300):
        c = plan_change(random.Random(seed), m, s, min_size=3, max_size=members + spares)
        if c is None:
            assert not s and members <= 3, "a change was possible"
            continue
        seen.add((c.action, c.fault))
        grow = (c.add is not None) - (c.remove is not None)
        assert 3 <= members + grow <= members + spares, c
        assert c.add is None or c.add in s
        assert c.remove is None or c.remove in m
        assert (c.add is None) == (c.action == "remove")
        assert (c.remove is None) == (c.action == "add")
        assert c.fault in FAULTS and c.via in ("join", "post")
    if spares and members < 5:  # every action and every fault gets its turn
        actions = {"add", "replace"} | ({"remove"} if members > 3 else set())
        assert {a for a, _ in seen} == actions
        assert {f for _, f in seen} == set(FAULTS)
    # the plan depends on the seed and the two lists only
    assert plan_change(random.Random(7), m, s) == plan_change(random.Random(7), m, s)


def test_plan_change_only_grows_a_cluster_below_its_minimum() -> None:
    for seed in range(100):
        c = plan_change(random.Random(seed), ["n1", "n2"], ["n4"], min_size=3)
        assert c is not None and c.action in ("add", "replace")
    assert plan_change(random.Random(1), ["n1", "n2", "n3"], [], min_size=3) is None


def test_members_of_reads_the_contract_shape() -> None:
    body = {
        "self": {"id": "n1", "role": "leader"},
        "members": [
            {"id": "n2", "api": "a", "raft": "r", "voter": True},
            {"id": "n4", "api": "a", "raft": "r", "voter": False},
            {"id": "n1", "api": "a", "raft": "r", "voter": True},
        ],
    }
    assert members_of(body) == MemberView(("n1", "n2", "n4"), ("n1", "n2"))
    assert members_of({"self": {}}) is None  # a server without membership changes
    assert members_of({"members": [{"api": "x"}]}) is None
    assert members_of([]) is None


def test_hosts_write_a_join_config_listing_the_spare_hosts(tmp_path: Path) -> None:
    h = Hosts(tmp_path, 3, faketime=False, spares=2)
    h._write_config()
    initial = tomllib.loads((tmp_path / "cluster.toml").read_text())
    join = tomllib.loads((tmp_path / "cluster-join.toml").read_text())
    assert [n["id"] for n in initial["nodes"]] == ["n1", "n2", "n3"]
    assert [n["id"] for n in join["nodes"]] == ["n1", "n2", "n3", "n4", "n5"]
    assert join["nodes"][4] == {"id": "n5", "raft": "10.213.7.5:7100", "api": "10.213.7.5:7000"}
    assert join["cluster"] == initial["cluster"]  # one cluster: the same secret and data dir
    with pytest.raises(ValueError, match="at most 9"):
        Hosts(tmp_path, 8, faketime=False, spares=2)
    plain = Hosts(tmp_path / "p", 3, faketime=False)
    (tmp_path / "p").mkdir()
    plain._write_config()
    assert not (tmp_path / "p" / "cluster-join.toml").exists()


def _node(tmp_path: Path, i: int, *, spare: bool = False) -> NodeProc:
    nid = f"n{i}"
    return NodeProc(
        index=i, id=nid, ns=f"jepsen-{nid}", ip=f"10.213.7.{i}",
        log_path=tmp_path / "logs" / nid, clock_file=tmp_path / "clock" / nid,
        data_dir=tmp_path / "data" / nid, eio_flag=tmp_path / "eio" / nid,
        wall_file=tmp_path / "wall" / nid, spare=spare,
    )  # fmt: skip


def test_wipe_empties_the_data_dir_but_keeps_it(tmp_path: Path) -> None:
    h = Hosts(tmp_path, 1, faketime=False)
    node = _node(tmp_path, 1)
    (node.data_dir / "journal" / "seg").mkdir(parents=True)
    (node.data_dir / "journal" / "seg" / "0001").write_bytes(b"x")
    (node.data_dir / "journal" / "0002").write_bytes(b"y")
    (node.data_dir / "snapshot").write_bytes(b"z")
    assert h.wipe(node) == 3
    assert node.data_dir.is_dir() and not any(node.data_dir.iterdir())
    assert h.wipe(node) == 0


class _FakeHosts(Hosts):
    """Hosts whose node processes are only flags (no namespaces): start/stop are recorded."""

    def __init__(self, tmp_path: Path, members: int, spares: int) -> None:
        super().__init__(tmp_path, members, faketime=False, spares=spares)
        self.nodes = [_node(tmp_path, i) for i in range(1, members + 1)]
        extra = range(members + 1, members + 1 + spares)
        self.spares = [_node(tmp_path, i, spare=True) for i in extra]
        self.running: set[str] = {n.id for n in self.nodes}
        self.calls: list[str] = []

    def start(self, node: NodeProc) -> None:
        self.calls.append(f"start {node.id}")
        self.running.add(node.id)

    def stop(self, node: NodeProc, timeout_s: float = 10.0) -> None:
        self.calls.append(f"stop {node.id}")
        self.running.discard(node.id)


def test_sync_members_makes_the_harness_view_the_leaders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _FakeHosts(tmp_path, 3, 2)
    refs = [NodeRef(n.id, n.url) for n in h.nodes]
    held = refs  # the producers hold this very list: it must change in place

    class _Workload:
        nodes = refs

    ctx: Any = type("Ctx", (), {"hosts": h, "workload": _Workload()})()
    # The leader lists n4 (added though the harness never saw it confirmed) and not n2.
    view = MemberView(("n1", "n3", "n4"), ("n1", "n3"))

    async def leader_members(_ctx: Any) -> MemberView:
        return view

    monkeypatch.setattr(nemesis, "leader_members", leader_members)
    monkeypatch.setattr(NodeProc, "alive", lambda self: self.id in h.running)
    h.nodes[1].join = "x"  # n2
    detail: dict[str, Any] = {}
    asyncio.run(nemesis.sync_members(ctx, detail))
    assert [n.id for n in h.nodes] == ["n1", "n3", "n4"]
    assert [n.id for n in h.spares] == ["n2", "n5"]
    assert h.calls == ["stop n2", "start n4"]
    assert [r.id for r in held] == ["n1", "n3", "n4"] and held is _Workload.nodes
    assert detail["members_after"] == ["n1", "n3", "n4"]

    # No answer (no leader, or a server without membership): the view stays as it is.
    async def nobody(_ctx: Any) -> None:
        return None

    monkeypatch.setattr(nemesis, "leader_members", nobody)
    h.running.add("n5")  # a join that never finished: the spare host is stopped
    asyncio.run(nemesis.sync_members(ctx, detail))
    assert [n.id for n in h.nodes] == ["n1", "n3", "n4"]
    assert h.calls[-1] == "stop n5" and detail["members_after"] is None


def test_convergence_is_judged_over_the_final_members() -> None:
    nodes = [
        {"id": "n1", "applied_index": 9, "digest": "a"},
        {"id": "n3", "applied_index": 9, "digest": "a"},
        {"id": "n2", "applied_index": 5, "digest": "old"},  # left the cluster at index 5
    ]
    run = {"nodes": ["n1", "n2", "n3"], "members": ["n1", "n3", "n4"]}
    out = check_convergence(nodes, run)
    assert out["violations"] == {"divergent": 0, "missing": 1}  # n4 is a member: no digest
    assert out["examples"]["missing"] == [{"node": "n4"}]
    nodes.append({"id": "n4", "applied_index": 9, "digest": "b"})
    out = check_convergence(nodes, run)
    assert out["violations"] == {"divergent": 1, "missing": 0}
    assert out["examples"]["divergent"][0]["digests"] == {"n1": "a", "n3": "a", "n4": "b"}
    # without "members" (no membership change) every node of the run is judged
    del run["members"]
    assert check_convergence(nodes[:3], run)["violations"]["divergent"] == 1


def _window(steps: list[dict[str, Any]] | None) -> dict[str, Any]:
    detail = {"skipped": "no change fits"} if steps is None else {"steps": steps}
    return {"nemesis": "membership", "start_ns": 1, "end_ns": 2, "detail": detail}


def test_membership_check() -> None:
    run = {"members": ["n1", "n2", "n4"]}
    agree = [{"id": n, "members": ["n4", "n2", "n1"]} for n in ("n1", "n2", "n4")]
    done = [_window([{"step": "post", "status": 201}, {"step": "voter", "ok": True}])]
    ok = check_membership(agree, run, done)
    assert ok["valid"] is True and ok["counts"]["steps_completed"] == 1

    split = [*agree[:2], {"id": "n4", "members": ["n1", "n2", "n3", "n4"]}]
    assert check_membership(split, run, done)["violations"]["members_disagree"] == 1
    ghost = [{"id": n, "members": ["n1", "n2", "n4", "n5"]} for n in ("n1", "n2", "n4")]
    assert check_membership(ghost, run, done)["violations"]["members_disagree"] == 1

    never = [_window([{"step": "post", "status": 404}, {"step": "voter", "ok": False}])]
    out = check_membership(agree, run, [*never, _window(None)])
    assert out["violations"] == {"members_disagree": 0, "no_change_made": 1}
    assert out["counts"]["skipped"] == 1
    # only skipped windows, or none at all, or a server without members: nothing to judge
    assert check_membership([{"id": "n1"}], {}, [_window(None)])["valid"] is True
    assert check_membership([{"id": "n1"}], {"nodes": ["n1"]}, [])["valid"] is True


def test_membership_check_is_judged(tmp_path: Path) -> None:
    h = History()
    h.enqueue(1, "a")
    never = [_window([{"step": "voter", "ok": False}])]
    res = judge(h.write(tmp_path / "r", nemeses=never))
    plain = judge(h.write(tmp_path / "plain"))
    assert res["valid"] is False
    failing = {k for k, c in res["checks"].items() if not c["valid"]}
    assert failing - {k for k, c in plain["checks"].items() if not c["valid"]} == {"membership"}


def test_five_node_tier_writes_its_own_section(tmp_path: Path) -> None:
    page = tmp_path / "reliability.md"
    page.write_text(f"# Reliability\n\nthree-node table\n\n{KEEP}\n\n## notes\n")
    row = {"nemesis": "membership", "exit": 0, "dir": "/tmp/x/membership", "operations": 20000}
    five = render([row], date="D1", commit="c1", min_ops=1, time_limit_s=60, nodes=5)
    assert "## The 5-node tier" in five and "--nodes 5`" in five
    assert "full tier (`jepsen-style/chaos --nodes 5`)" in five
    write_page(five, page, 5)
    begin, end = section_marks(5)
    text = page.read_text()
    assert text.index("three-node table") < text.index(KEEP) < text.index(begin)
    assert "## notes" in text and text.count(begin) == 1
    again = render([row | {"exit": 1}], date="D2", commit="c2", min_ops=1, time_limit_s=60, nodes=5)
    write_page(again, page, 5)
    text = page.read_text()
    assert text.count(begin) == 1 and text.count(end) == 1
    assert "D2" in text and "D1" not in text and "FAILED" in text
    # the three-node tier rewrites the top and keeps the five-node section
    three = render([row], date="D3", commit="c3", min_ops=1, time_limit_s=60)
    write_page(three, page, 3)
    text = page.read_text()
    assert text.startswith("# Reliability: the jepsen-style tier") and "D3" in text
    assert "three-node table" not in text and "D2" in text and "## notes" in text
    # a page without KEEP gets one before the section
    bare = tmp_path / "bare.md"
    bare.write_text("# Reliability\n")
    write_page(five, bare, 5)
    assert bare.read_text().index(KEEP) < bare.read_text().index(begin)


def test_run_builds_spare_hosts_only_for_membership() -> None:
    assert spare_hosts(["membership"]) == 2
    assert spare_hosts(["wipe-node", "rolling-restart", "kill-one"]) == 0
    assert {"membership", "wipe-node", "rolling-restart"} <= set(nemesis.NEMESES)
    assert {"membership", "wipe-node", "rolling-restart"} <= set(nemesis.expand(["all"]))
    assert json.dumps(nemesis.DESCRIPTIONS)  # every nemesis described
    assert set(nemesis.NEMESES) <= set(nemesis.DESCRIPTIONS)
