"""Every route of the routes table has a client method, and every admin route a ``raftq``
command: each is called against real servers (``LocalNode``s behind the real app) and must
reach its route. A route added to ``raftq.server.routes.ROUTES`` without a client method (and,
for an admin route, a command) fails here until it is listed below with one."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from raftq.cli.main import main
from raftq.client import Client, SyncClient
from raftq.config import Role
from raftq.errors import RaftqError, Rejected
from raftq.server.routes import APP_HANDLERS, ROUTES

# Served for browsers, probes, Prometheus and the nodes themselves: not client operations.
NOT_OPERATIONS = APP_HANDLERS | {"healthz", "readyz"}

# handler -> a client call that must send that route's request.
CLIENT_CALLS: dict[str, Callable[[Client], Awaitable[Any]]] = {
    "enqueue": lambda c: c.enqueue("q", 1),
    "claim_one": lambda c: c.claim("q", worker="w"),
    "claim_many": lambda c: c.claim(["q", "r"], worker="w"),
    "stream": lambda c: c.stream("q", worker="w", credit=0),  # closed with the client
    "heartbeat": lambda c: c.heartbeat(1, 1),
    "ack": lambda c: c.ack(1, 1),
    "ack_many": lambda c: c.ack_many([(1, 1, None)]),
    "nack": lambda c: c.nack(1, 1),
    "release": lambda c: c.release(1, 1),
    "cancel": lambda c: c.cancel(1),
    "get_job": lambda c: c.get_job(1),
    "create_batch": lambda c: c.create_batch([{"queue": "q", "payload": 1}]),
    "get_batch": lambda c: c.batch(1),
    "list_queues": lambda c: c.queues(),
    "get_queue": lambda c: c.queue("q"),
    "dead": lambda c: c.dead("q"),
    "pause": lambda c: c.pause("q"),
    "resume": lambda c: c.resume("q"),
    "purge": lambda c: c.purge("q"),
    "configure": lambda c: c.configure("q", retention_ms=1000),
    "get_limits": lambda c: c.limits("q"),
    "set_limits": lambda c: c.set_limits("q", concurrency=2, group_rate=(5, 1000)),
    "requeue_dead": lambda c: c.requeue_dead("q"),
    "cluster": lambda c: c.cluster(),
    "transfer_leadership": lambda c: c.transfer_leadership(),
    "members": lambda c: c.members(),
    "add_member": lambda c: c.add_member("n9", "127.0.0.1:1", "127.0.0.1:2"),
    "remove_member": lambda c: c.remove_member("n9"),
    "drain_node": lambda c: c.drain(c.nodes[0]),
    "enable_version": lambda c: c.enable_version(),
    "backup": lambda c: c.backup(),
    "list_schedules": lambda c: c.schedules(),
    "get_schedule": lambda c: c.schedule("s"),
    "put_schedule": lambda c: c.set_schedule("s", "q", 1, every_ms=1000),
    "delete_schedule": lambda c: c.delete_schedule("s"),
    "trigger_schedule": lambda c: c.trigger_schedule("s"),
    "pause_schedule": lambda c: c.pause_schedule("s"),
    "resume_schedule": lambda c: c.resume_schedule("s"),
}

# handler of an admin route (and cancel) -> the `raftq` command that calls it ({config}: a
# TOML naming the test's nodes; the other commands get --nodes).
CLI_COMMANDS: dict[str, list[str]] = {
    "pause": ["queue", "pause", "q"],
    "resume": ["queue", "resume", "q"],
    "purge": ["queue", "purge", "q"],
    "configure": ["queue", "configure", "q", "--dedup-window", "10m", "--retention", "7d"],
    "requeue_dead": ["dead", "q", "--requeue"],
    "set_limits": ["limits", "set", "q", "--concurrency", "2", "--group-rate", "5/1s"],
    "cancel": ["cancel", "1"],
    "transfer_leadership": ["leader", "transfer"],
    "add_member": ["members", "add", "n9", "--api", "127.0.0.1:1", "--raft", "127.0.0.1:2"],
    "remove_member": ["members", "remove", "n9"],
    "drain_node": ["node", "drain", "--config", "{config}", "--node", "n1", "--timeout", "2"],
    "enable_version": ["upgrade", "enable", "--config", "{config}"],
    "backup": ["data", "backup", "{out}"],
    "list_schedules": ["schedules", "list"],
    "put_schedule": ["schedules", "set", "s", "--queue", "q", "--every", "1s"],
    "delete_schedule": ["schedules", "delete", "s"],
    "trigger_schedule": ["schedules", "trigger", "s"],
    "pause_schedule": ["schedules", "pause", "s"],
    "resume_schedule": ["schedules", "resume", "s"],
}
_BY_CONFIG = {"drain_node", "enable_version"}


def _pattern(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


def _reached(seen: list[tuple[str, str, str | None]], method: str, path: str) -> bool:
    pattern = _pattern(path)
    return any(m == method and pattern.match(p) for m, p, _rid in seen)


def _admin_only(handler: str) -> bool:
    route = next(r for r in ROUTES if r.handler == handler)
    return route.rule.roles == frozenset({Role.ADMIN})


# `main` installs a stderr handler on the root logger: taken away after each test.
pytestmark = pytest.mark.usefixtures("restore_root_logging")


def test_the_tables_cover_every_route() -> None:
    handlers = {r.handler for r in ROUTES} - NOT_OPERATIONS
    assert sorted(handlers - set(CLIENT_CALLS)) == [], "routes without a client method"
    assert sorted(set(CLIENT_CALLS) - handlers) == []
    admin = {h for h in handlers if _admin_only(h)}
    assert sorted(admin - set(CLI_COMMANDS)) == [], "admin routes without a command"
    for name in {c.__code__.co_names[0] for c in CLIENT_CALLS.values()}:
        assert callable(getattr(SyncClient, name, None)), f"SyncClient.{name} missing"


async def test_each_client_method_reaches_its_route(start) -> None:
    async with start(followers=0) as c:
        async with Client(c.csv(), retry_ms=0, timeout_ms=3000) as client:
            missed = []
            for route in ROUTES:
                call = CLIENT_CALLS.get(route.handler)
                if call is None:
                    continue
                c.faults["n1"].seen.clear()
                # refused or unsupported by the test double: it got there
                with contextlib.suppress(RaftqError):
                    await call(client)
                if not _reached(c.faults["n1"].seen, route.method, route.path):
                    missed.append(f"{route.handler}: {route.method} {route.path}")
        assert missed == []


async def test_each_admin_command_reaches_its_route(start, tmp_path: Path) -> None:
    async with start(followers=0) as c:
        config = tmp_path / "one.toml"
        config.write_text(
            f'[cluster]\nname = "t"\ndata_dir = "{tmp_path}"\n\n[[nodes]]\nid = "n1"\n'
            f'raft = "127.0.0.1:1"\napi = "{c.addresses["n1"]}"\n'
        )
        missed = []
        for handler, argv in CLI_COMMANDS.items():
            route = next(r for r in ROUTES if r.handler == handler)
            args = [
                a.replace("{config}", str(config)).replace("{out}", str(tmp_path / "backup"))
                for a in argv
            ]
            if handler not in _BY_CONFIG:
                # (a short budget: the test double answers add_member with a 501, retried)
                args += ["--nodes", c.csv(), "--timeout-ms", "500"]
            c.faults["n1"].seen.clear()
            code = await asyncio.to_thread(main, args)
            if not _reached(c.faults["n1"].seen, route.method, route.path):
                missed.append(f"{handler}: raftq {' '.join(argv)} (exit {code})")
        assert missed == []


async def test_configure_end_to_end(start, capsys: pytest.CaptureFixture[str]) -> None:
    """The command sets both windows, the queue's stats show them, and a window out of range
    is refused naming the field."""
    async with start(followers=1) as c:
        code = await asyncio.to_thread(
            main,
            ["queue", "configure", "emails", "--dedup-window", "10m", "--retention", "7d",
             "--nodes", c.csv("n2")],
        )  # fmt: skip
        out, err = capsys.readouterr()
        assert (code, err) == (0, "")
        assert out == "emails: dedup window 10m, retention 7d\n"
        async with Client(c.csv("n2")) as client:
            stats = await client.queue("emails")
            assert (stats["dedup_window_ms"], stats["retention_ms"]) == (600_000, 604_800_000)
            answer = await client.configure("emails", dedup_window_ms=0)
            assert answer == {"queue": "emails", "dedup_window_ms": 0, "retention_ms": 604_800_000}
            with pytest.raises(RaftqError, match="retention_ms"):
                await client.configure("emails", retention_ms=8 * 86_400_000)
        code = await asyncio.to_thread(
            main, ["queue", "configure", "emails", "--retention", "7", "--nodes", c.csv()]
        )
        assert code == 2 and "is not a duration" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["raft"])
async def test_cluster_admin_methods_on_raft_nodes(start) -> None:
    """Client (through a follower) and SyncClient against real RaftNodes on one in-memory
    network: leadership moves, the log version is enabled, a node without a process to stop
    refuses to drain."""
    async with start(followers=2) as c, Client(c.csv("n2")) as client:
        assert await client.enable_version() == (await client.cluster())["self"]["log_version"]
        moved = await client.transfer_leadership()
        assert moved["previous"] != moved["leader"]
        assert moved["leader_api"] in c.addresses.values()

        def sync_calls() -> None:
            with SyncClient(c.csv("n3"), retry_ms=0) as sync:
                assert sync.configure("q")["retention_ms"] == 3_600_000
                with pytest.raises(Rejected) as refused:
                    sync.drain(c.addresses["n3"])
                assert (refused.value.reason, refused.value.status) == ("not_drainable", 409)

        await asyncio.to_thread(sync_calls)
