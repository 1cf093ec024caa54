"""Membership: the cluster's members at the end agree, and a membership nemesis changed them.

- ``members_disagree``: two nodes of ``nodes.json`` report different ``members`` (the
  replicated membership each one applied), or what they report is not the final member list
  of ``run.json`` (``members``, the harness's view made the leader's at the heal): a ghost
  member, or one that went missing.
- ``no_change_made``: the run had ``membership`` windows (not skipped) and not one change
  completed (no step with ``"ok": true``): the nemesis exercised nothing, which is not a pass.

Runs without ``members`` anywhere (no spare hosts, servers without membership changes) have
nothing to judge here; convergence (``convergence.py``) is judged over the final members.
"""

from __future__ import annotations

from typing import Any

from raftq_jepsen.checker.result import Findings

__all__ = ["check_membership"]


def check_membership(
    nodes: list[dict[str, Any]], run: dict[str, Any], windows: list[dict[str, Any]]
) -> dict[str, Any]:
    out = Findings(("members_disagree", "no_change_made"))
    final = run.get("members")
    reported = {
        str(n.get("id")): sorted(str(m) for m in n["members"])
        for n in nodes
        if isinstance(n.get("members"), list)
    }
    distinct = {tuple(v) for v in reported.values()}
    if len(distinct) > 1 or (
        distinct and isinstance(final, list) and distinct != {tuple(sorted(map(str, final)))}
    ):
        out.flag("members_disagree", {"reported": reported, "run_members": final})
    changes = [w for w in windows if w.get("nemesis") == "membership"]
    tried = [w for w in changes if "skipped" not in (w.get("detail") or {})]
    done = [
        s
        for w in tried
        for s in (w.get("detail") or {}).get("steps", [])
        if isinstance(s, dict) and s.get("ok") is True
    ]
    if tried and not done:
        first = (tried[0].get("detail") or {}).get("steps")
        out.flag("no_change_made", {"windows": len(tried), "first_steps": first})
    out.counts = {
        "windows": len(changes),
        "skipped": len(changes) - len(tried),
        "steps_completed": len(done),
        "final_members": final,
    }
    return out.result()
