"""Membership for the nemeses: what change to make next (pure, seeded), and the members API.

The contract the harness works against (``docs/http-api.md``): ``GET /v1/cluster`` carries
``members: [{"id", "api", "raft", "voter"}]`` (the replicated membership), ``POST
/v1/cluster/members {"id", "api", "raft"}`` adds a node, ``DELETE /v1/cluster/members/{id}``
removes one (409 when it would leave no quorum or another change is in flight), and ``raftq
serve ... --join HOST:PORT`` starts a node that asks to be added, catches up as a non-voter and
then votes. One change at a time, as the cluster allows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

__all__ = [
    "FAULTS",
    "Change",
    "MemberView",
    "change_members",
    "members_of",
    "plan_change",
    "read_members",
]

Action = Literal["add", "remove", "replace"]
Via = Literal["join", "post"]
# What else happens while the change is in flight: nothing; one member cut off from the others
# (the leader half of the time); one follower kill -9'd; the leader kill -9'd right after the
# change was asked for (a change in flight while the leader dies).
FaultKind = Literal["none", "partition", "kill-follower", "kill-leader"]
FAULTS: tuple[FaultKind, ...] = ("none", "partition", "kill-follower", "kill-leader")


@dataclass(frozen=True, slots=True)
class Change:
    """One membership change: ``add`` joins a spare host, ``remove`` takes a member out,
    ``replace`` does both (add, wait until it votes, then remove: ``raftq members replace``).
    ``via``: the new node asks by itself (``--join``) or is first added from outside (POST,
    then started with ``--join``)."""

    action: Action
    add: str | None
    remove: str | None
    via: Via
    fault: FaultKind


def plan_change(
    rng: random.Random,
    members: list[str],
    spares: list[str],
    *,
    min_size: int = 3,
    max_size: int = 5,
) -> Change | None:
    """The next change, or None when no change keeps the cluster within its bounds.

    Never below ``min_size`` members (nor below the current size when the cluster already is
    smaller: then it may only grow) and never above ``max_size`` or the hosts there are.
    ``members`` and ``spares`` are node ids; the choice depends only on them and ``rng``.
    """
    can_add = bool(spares) and len(members) < max_size
    can_remove = len(members) > min_size
    can_replace = bool(spares) and len(members) >= 1
    actions: list[Action] = []
    if can_add:
        actions.append("add")
    if can_remove:
        actions.append("remove")
    if can_replace:
        actions.append("replace")
    if not actions:
        return None
    action = rng.choice(actions)
    add = rng.choice(sorted(spares)) if action in ("add", "replace") else None
    remove = rng.choice(sorted(members)) if action in ("remove", "replace") else None
    via: Via = rng.choice(("join", "post"))
    fault = rng.choice(FAULTS)
    return Change(action, add, remove, via, fault)


@dataclass(frozen=True, slots=True)
class MemberView:
    """What one node says the membership is: ids, and which of them vote."""

    ids: tuple[str, ...]
    voters: tuple[str, ...]


def members_of(body: Any) -> MemberView | None:
    """The ``members`` of a ``GET /v1/cluster`` answer; None if it has none (a server without
    membership changes) or it is malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("members"), list):
        return None
    ids, voters = [], []
    for m in body["members"]:
        if not isinstance(m, dict) or not isinstance(m.get("id"), str):
            return None
        ids.append(m["id"])
        if m.get("voter", True):
            voters.append(m["id"])
    return MemberView(tuple(sorted(ids)), tuple(sorted(voters)))


async def read_members(
    session: aiohttp.ClientSession, url: str, timeout_s: float = 2.0
) -> tuple[str | None, MemberView | None]:
    """``(role, members)`` of the node at ``url`` (``(None, None)`` if it did not answer)."""
    try:
        async with session.get(
            url + "/v1/cluster", timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as r:
            body = await r.json()
    except (TimeoutError, aiohttp.ClientError, ValueError):
        return None, None
    me = body.get("self") if isinstance(body, dict) else None
    role = me.get("role") if isinstance(me, dict) else None
    return (role if isinstance(role, str) else None), members_of(body)


async def change_members(
    session: aiohttp.ClientSession,
    url: str,
    method: Literal["POST", "DELETE"],
    node_id: str,
    body: dict[str, Any] | None = None,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Ask the node at ``url`` for one change; returns ``{"status", "error"}`` (status None
    when no answer came: the change may or may not happen)."""
    path = "/v1/cluster/members" + ("" if method == "POST" else f"/{node_id}")
    try:
        async with session.request(
            method, url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as r:
            status = r.status
            try:
                answer = await r.json()
            except (aiohttp.ContentTypeError, ValueError):
                answer = None
    except (TimeoutError, aiohttp.ClientError) as e:
        return {"status": None, "error": type(e).__name__}
    error = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = f"{answer['error'].get('code')}: {answer['error'].get('message')}"[:200]
    return {"status": status, "error": error}
