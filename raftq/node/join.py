"""``raftq serve --join HOST:PORT``: a new node joins a running cluster through the API of any
of its members.

1. Before the engine starts, with a new data dir: ask the member for the cluster's voters
   (``GET /v1/cluster/members``); the node starts with them (plus itself) instead of its
   config's nodes, so it never counts a majority of its own (``raftq.raft.pysyncobj.membership``).
2. Once its API serves: ask for its own addition (``POST /v1/cluster/members``) until the
   cluster has it, retrying while the leader refuses (409: a change in flight, no quorum) or
   is being elected (503). The leader then replicates to it (snapshot, then log); it is
   counted for commit only for entries it holds (Raft's match index) and grants no vote to a
   candidate with history before it caught up once (its data dir is new).

With tokens configured the requests carry ``RAFTQ_TOKEN`` (an admin token).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from typing import Any

import aiohttp

from raftq.config import ClusterConfig
from raftq.errors import MembershipError

__all__ = ["JoinError", "ask_to_join", "cluster_voters"]

logger = logging.getLogger(__name__)

_RETRY_S = 1.0


class JoinError(MembershipError):
    """The node cannot join the cluster at the given address (one line: why, what to do)."""


def _url(config: ClusterConfig, address: str, path: str) -> str:
    scheme = "https" if config.tls else "http"
    return f"{scheme}://{address}{path}"


def _headers() -> dict[str, str]:
    token = os.environ.get("RAFTQ_TOKEN")
    return {} if not token else {"Authorization": f"Bearer {token}"}


async def cluster_voters(
    config: ClusterConfig, address: str, ssl_context: ssl.SSLContext | None
) -> list[tuple[str, str, str]]:
    """The voters ``(raft, id, api)`` of the cluster whose member serves ``address``."""
    url = _url(config, address, "/v1/cluster/members")
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(url, headers=_headers(), ssl=ssl_context or True) as resp,
        ):
            body: Any = await resp.json(content_type=None)
            if resp.status != 200:
                raise JoinError(f"--join {address}: {resp.status} {_message(body)}")
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise JoinError(f"--join {address}: cannot ask the cluster for its members ({e})") from e
    members = body.get("members") if isinstance(body, dict) else None
    if not isinstance(members, list) or not members:
        raise JoinError(f"--join {address}: the answer lists no members")
    return [(str(m["raft"]), str(m["id"]), str(m["api"] or "")) for m in members]


async def ask_to_join(
    config: ClusterConfig, node_id: str, address: str, ssl_context: ssl.SSLContext | None
) -> None:
    """Ask the cluster at ``address`` to add this node, until it has it (runs until then)."""
    me = config.node(node_id)
    body = {"id": node_id, "api": me.api, "raft": me.raft}
    last = ""
    while True:
        try:
            voters = await cluster_voters(config, address, ssl_context)
            if any(raft == me.raft for raft, _, _ in voters):
                logger.info("node %s: member of the cluster (joined through %s)", node_id, address)
                return
            url = _url(config, address, "/v1/cluster/members")
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
                session.post(url, json=body, headers=_headers(), ssl=ssl_context or True) as resp,
            ):
                answer: Any = await resp.json(content_type=None)
                if resp.status == 200:
                    logger.info("node %s: added to the cluster through %s", node_id, address)
                    return
                problem = f"{resp.status} {_message(answer)}"
        except (JoinError, aiohttp.ClientError, TimeoutError, ValueError) as e:
            problem = str(e)
        if problem != last:  # one line per new reason, not one per retry
            logger.warning("node %s: not added yet: %s; retrying", node_id, problem)
            last = problem
        await asyncio.sleep(_RETRY_S)


def _message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))
    return str(body)[:200]
