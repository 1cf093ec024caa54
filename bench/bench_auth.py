"""Cost of the security layer per request, in process (no network, no Raft).

- ``token check``: ``Guard._match`` of a bearer header against N configured tokens (SHA-256 of
  the presented token, then a constant-time comparison with every configured hash);
- ``sign + verify``: one node-to-node signature made and checked (``PeerKey``);
- ``guard``: the whole check around an empty handler, auth off and with 10 tokens;
- ``GET /v1/queues``: requests/s through a real aiohttp server over an in-process node, with
  auth off and with 10 tokens (one keep-alive connection, sequential requests; the two
  alternate, so machine noise hits both alike).

Each figure is the median of ``--repeat`` runs. Run it alone on the box:
``flock /tmp/bench.lock .venv/bin/python bench/bench_auth.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import web
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from raftq.config import Role, TokenConfig
from raftq.server import create_app
from raftq.server.auth import Guard, Security
from raftq.server.peer_auth import PeerKey
from tests.support.local_node import LocalNode, serve


def _tokens(n: int) -> tuple[TokenConfig, ...]:
    return tuple(
        TokenConfig(
            name=f"t{i}",
            sha256=hashlib.sha256(f"token-{i}".encode()).hexdigest(),
            role=Role.ADMIN,
        )
        for i in range(n)
    )


def _per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def _http_rate(security: Security, header: dict[str, str], n: int) -> float:
    app = create_app(LocalNode("n1"), security=security)
    async with serve(app) as address, aiohttp.ClientSession() as session:
        url = f"http://{address}/v1/queues"
        for _ in range(50):  # warm up
            async with session.get(url, headers=header) as r:
                await r.read()
        start = time.perf_counter()
        for _ in range(n):
            async with session.get(url, headers=header) as r:
                assert r.status == 200
                await r.read()
        return n / (time.perf_counter() - start)


async def _guard_us(security: Security, header: dict[str, str], n: int = 20_000) -> float:
    from aiohttp.test_utils import make_mocked_request  # noqa: PLC0415

    async def empty(request: web.Request) -> web.StreamResponse:
        return web.Response()

    guarded = Guard(security, LocalNode("n1")).wrap("GET", "/v1/queues", empty)
    request = make_mocked_request("GET", "/v1/queues", headers=header)
    start = time.perf_counter()
    for _ in range(n):
        await guarded(request)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    for n_tokens in (1, 10, 100):
        guard = Guard(Security(tokens=_tokens(n_tokens)), LocalNode("n1"))
        header = f"Bearer token-{n_tokens - 1}"
        us = statistics.median(
            _per_call_us(lambda g=guard, h=header: g._match(h), 20_000) for _ in range(args.repeat)
        )
        print(f"token check, {n_tokens:>3} tokens: {us:6.2f} us")
    key = PeerKey("cluster-secret-0123456789")
    url = URL("/v1/queues/emails/jobs")

    def sign_verify_cost() -> float:
        from aiohttp.test_utils import make_mocked_request  # noqa: PLC0415

        headers = {"X-Raftq-Forwarded": "n2", "X-Raftq-Client": "10.0.0.1",
                   "Authorization": "Bearer x"}  # fmt: skip
        key.sign("POST", url, headers)
        request = make_mocked_request("POST", str(url), headers=headers)

        def once() -> None:
            h = dict(headers)
            key.sign("POST", url, h)
            key.verify(request)

        return _per_call_us(once, 20_000)

    us = statistics.median(sign_verify_cost() for _ in range(args.repeat))
    print(f"sign + verify one forward:   {us:6.2f} us")
    # Guard alone, around an empty handler: its whole cost per request.
    for label, security, header in (
        ("auth off", Security(), {}),
        ("10 tokens", Security(tokens=_tokens(10)), {"Authorization": "Bearer token-9"}),
    ):
        us = statistics.median(asyncio.run(_guard_us(security, header)) for _ in range(args.repeat))
        print(f"guard, {label:>9}:           {us:6.2f} us")
    # Through HTTP, alternating the two servers so that machine noise hits both alike.
    cases = (
        ("auth off", Security(), {}),
        ("10 tokens", Security(tokens=_tokens(10)), {"Authorization": "Bearer token-9"}),
    )
    rates: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for i in range(args.repeat):
        for label, security, header in cases if i % 2 == 0 else reversed(cases):
            rates[label].append(asyncio.run(_http_rate(security, header, args.requests)))
    for label, values in rates.items():
        print(f"GET /v1/queues, {label:>9}: {statistics.median(values):7.0f} requests/s")


if __name__ == "__main__":
    main()
