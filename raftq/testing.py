"""Test your own tasks and handlers against a real one-node raftq, in this process.

``LocalNode`` is a whole raftq node (the same state machine, log and HTTP API as a cluster's)
with its data in a temporary directory and its API on a free loopback port; Raft runs over
the in-process transport, with ``fsync = "off"`` (a test does not need durability, and it
is faster). Point a ``raftq.App``, ``Client``, ``SyncClient`` or ``Worker`` at ``node.url``::

    from raftq.testing import LocalNode, running

    async def test_welcome_email() -> None:
        async with LocalNode() as node:
            app = make_app(node.url)                       # your raftq.App
            handle = await send_welcome.enqueue(to="ada@example.com")
            async with running(app.worker()):
                assert await handle.wait(5_000) is True

``with LocalNode() as node:`` works too, from sync code: the node then runs on a thread of
its own. With pytest, ``pytest_plugins = ["raftq.testing"]`` in your ``conftest.py`` adds the
fixture ``raftq_node`` (a started ``LocalNode``, one per test; ``pytest -p raftq.testing`` does the
same) and needs no async plugin: ``running_sync(worker)`` runs a worker on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aiohttp import web

    from raftq.embed import Node
    from raftq.worker import Worker

__all__ = ["LocalNode", "raftq_node", "running", "running_sync"]

_T = TypeVar("_T")
_PREFIX = "/raftq"


class LocalNode:
    """A one-node raftq cluster in this process (see the module docstring).

    Args:
        data_dir: where its data goes (default: a temporary directory, removed at the end).
        extra_toml: more of the cluster file, e.g. ``"[limits]\\nmax_payload_bytes = 1024"``.

    Attributes:
        url: the API's base URL, for ``nodes=`` of a client, worker or app.
        node: the embedded ``raftq.Node`` (use it on the loop the node runs on).
    """

    def __init__(self, *, data_dir: str | Path | None = None, extra_toml: str = "") -> None:
        self._data_dir = None if data_dir is None else Path(data_dir)
        self._extra = extra_toml
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._node: Node | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""

    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("the LocalNode is not started")
        return self._node

    # -- async ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the node on the running loop and wait until it leads."""
        from aiohttp import web  # noqa: PLC0415 - imported when a node is started

        from raftq.config import parse_config  # noqa: PLC0415
        from raftq.embed import Node  # noqa: PLC0415
        from raftq.raft.pysyncobj import new_pysyncobj_engine  # noqa: PLC0415
        from raftq.raft.pysyncobj.memory_transport import MemoryNetwork  # noqa: PLC0415

        if self._data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="raftq-test-")
            root = Path(self._tmp.name)
        else:
            root = self._data_dir
        api = socket.create_server(("127.0.0.1", 0))  # served by the site below: no race
        with socket.create_server(("127.0.0.1", 0)) as spare:  # raft: a number, never bound
            raft_port = spare.getsockname()[1]
        api_port = api.getsockname()[1]
        toml = "\n".join(
            [
                "[cluster]",
                'name = "raftq-testing"',
                'data_dir = "data"',
                "[raft]",
                'fsync = "off"',
                self._extra,
                "[[nodes]]",
                'id = "n1"',
                f'raft = "127.0.0.1:{raft_port}"',
                f'api = "127.0.0.1:{api_port}"',
                "",
            ]
        )
        config = parse_config(toml, root)
        engine = new_pysyncobj_engine(
            config, "n1", transport_class=MemoryNetwork().transport_class()
        )
        node = Node(config, "n1", engine=engine)
        app = web.Application()
        node.mount(app, prefix=_PREFIX)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.SockSite(self._runner, api).start()
        await node.start()
        self._node = node
        await node.wait_for_leader(30_000)
        self.url = f"http://127.0.0.1:{api_port}{_PREFIX}"

    async def stop(self) -> None:
        """Stop the node and remove its temporary data dir."""
        if self._node is not None:
            await self._node.stop()
            self._node = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> LocalNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- sync: the node on a thread of its own -------------------------------------------

    def _on_thread(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> LocalNode:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="raftq-local", daemon=True)
        self._thread.start()
        try:
            self._on_thread(self.start())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._on_thread(self.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
            loop.close()
            self._loop = self._thread = None


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` on this loop for the ``async with`` block; at its end, stop it at once
    (``stop(now=True)``: what is still running is nacked for redelivery) and wait for it."""
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop(now=True)
        await task


@contextlib.contextmanager
def running_sync(worker: Worker) -> Iterator[Worker]:
    """``running`` for sync code: the worker runs on a thread (and event loop) of its own
    for the ``with`` block, then is stopped at once and waited for."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def run() -> None:
        started.set()
        await worker.run()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(lambda: worker.stop(now=True))
        thread.join(60)
        loop.close()


def _fixture() -> Any:
    import pytest  # noqa: PLC0415 - only under pytest

    @pytest.fixture
    def raftq_node() -> Iterator[LocalNode]:
        """A started one-node raftq (``raftq.testing.LocalNode``) for this test."""
        with LocalNode() as node:
            yield node

    return raftq_node


try:  # the fixture, when this module is a pytest plugin
    raftq_node = _fixture()
except ImportError:  # pytest is not installed: LocalNode and running still work
    raftq_node = None
