"""``GET /v1/clock`` and ``PeerClocks``: the leader's question to the other nodes, between
real aiohttp servers (raftq/server/clock_probe.py)."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from raftq.config import ClusterConfig, parse_config
from raftq.server import create_app
from raftq.server.auth import Security
from raftq.server.clock_probe import PeerClocks
from tests.support.local_node import LocalNode, serve


def _config(root: Path, addresses: dict[str, str], secret: str | None) -> ClusterConfig:
    lines = ["[cluster]", 'name = "t"', 'data_dir = "data"']
    if secret is not None:
        lines.append(f'secret = "{secret}"')
    for i, (nid, api) in enumerate(addresses.items()):
        lines += ["", "[[nodes]]", f'id = "{nid}"', f'raft = "127.0.0.1:{20000 + i}"']
        lines.append(f'api = "{api}"')
    return parse_config("\n".join(lines), root)


async def _answers(tmp_path: Path, secrets: dict[str, str | None], asker: str | None) -> list[int]:
    async with AsyncExitStack() as stack:
        addresses = {"n1": "127.0.0.1:1"}  # the asker: never asked
        for nid, secret in secrets.items():
            app = create_app(LocalNode(nid), security=Security(secret=secret))
            addresses[nid] = await stack.enter_async_context(serve(app))
        config = _config(tmp_path, addresses, asker)
        return await PeerClocks(config, "n1")()


async def test_the_other_nodes_answer_with_their_wall_clocks(tmp_path: Path) -> None:
    before = time.time_ns() // 1_000_000
    answers = await _answers(tmp_path, {"n2": "s3cret", "n3": "s3cret"}, "s3cret")
    after = time.time_ns() // 1_000_000
    assert len(answers) == 2
    assert all(before - 5 <= a <= after + 5 for a in answers)


async def test_an_answer_not_signed_with_the_cluster_secret_is_not_taken(tmp_path: Path) -> None:
    answers = await _answers(tmp_path, {"n2": "s3cret", "n3": "another"}, "s3cret")
    assert len(answers) == 1


async def test_the_route_wants_a_nonce(tmp_path: Path) -> None:
    async with serve(create_app(LocalNode("n2"))) as address, aiohttp.ClientSession() as session:
        async with session.get(f"http://{address}/v1/clock") as resp:
            assert resp.status == 400
            assert "query.nonce" in (await resp.json())["error"]["message"]
        async with session.get(f"http://{address}/v1/clock?nonce={'a' * 32}") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["node"] == "n2" and body["mac"] is None
