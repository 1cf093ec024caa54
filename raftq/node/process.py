"""Running one node as a process: the raft node plus its HTTP API, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from raftq import runloop
from raftq.config import ClusterConfig
from raftq.node.claim import claim_node
from raftq.node.join import ask_to_join, check_cluster_id, cluster_voters
from raftq.node.notify import notify, notify_when_ready
from raftq.raft.datadir import DUMP_FILE
from raftq.raft.node import RaftNode
from raftq.raft.pysyncobj import new_pysyncobj_engine
from raftq.raft.pysyncobj.faults import install_stale_snapshots, wiped_node_votes
from raftq.raft.pysyncobj.membership import read_members_file
from raftq.server import testfaults
from raftq.server.app import create_app
from raftq.server.auth import security_from_config
from raftq.server.clock_probe import PeerClocks
from raftq.server.drain import DRAIN_KEY, Drain
from raftq.server.handlers import node_ready
from raftq.server.settings import ServerSettings
from raftq.server.testfaults import active_fault
from raftq.service.scheduler import Scheduler
from raftq.tls import check_peer_trust, peer_context, server_context

__all__ = ["run_node", "serve", "server_settings"]

logger = logging.getLogger(__name__)


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger of aiohttp's request handler (``aiohttp.server``). A request that is not
    valid HTTP (aiohttp's parser refuses it and answers 400 itself, before any raftq code)
    is one WARNING line naming the client and the problem, not an ERROR with a traceback:
    anyone can send one, so it is the client's fault and must not flood the log. Every
    other record passes through unchanged."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kw: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            problem = " ".join(str(exc_info.message).split())[:200]
            self.warning("%s: refused (%d): %s", str(msg) % args, exc_info.code, problem)
            return
        super().exception(msg, *args, exc_info=exc_info, **kw)


def server_settings(config: ClusterConfig) -> ServerSettings:
    lim = config.limits
    return ServerSettings(
        max_body_bytes=lim.max_body_bytes,
        max_payload_bytes=lim.max_payload_bytes,
        max_batch_jobs=lim.max_batch_jobs,
        max_wait_ms=lim.max_wait_ms,
        submit_timeout_ms=config.raft.submit_timeout_ms,
    )


async def serve(
    config: ClusterConfig, node_id: str, stop: asyncio.Event, *, join: str | None = None
) -> None:
    """Serve ``node_id`` of ``config`` until ``stop`` is set, then shut down cleanly.
    ``join``: the API address of a member of a running cluster to join (``raftq.node.join``)."""
    # TLS files are read before anything starts: a bad one stops the node with one line.
    ssl_server = None if config.tls is None else server_context(config.tls)
    ssl_peer = None if config.tls is None else peer_context(config.tls)
    if config.tls is not None:  # forwarding must be able to verify the peers' certificates
        check_peer_trust(config.tls, config.node(node_id).api_host)
    # The data dir's lock and both ports, before anything touches the data dir
    # (raftq.node.claim): a port taken or a node already running is one line, exit 2. Released
    # in the finally below, or by the process's exit if the start fails before it.
    claim = claim_node(config, node_id, api=True, raft=True)
    # The engine first, then the node on it (hashicorp raft's NewRaft moment). A test fault
    # below the API is a wrapper installed here, only when RAFTQ_TEST_FAULT names it.
    fault = active_fault()
    dump = str(config.node_data_dir(node_id) / DUMP_FILE)
    replica_hooks = (install_stale_snapshots(dump),) if fault == "install-stale-snapshot" else ()
    voters, cluster_id = None, ""
    if join is not None:
        voters, cluster_id = await cluster_voters(config, join, ssl_peer)
        own = read_members_file(str(config.node_data_dir(node_id)))
        if own is not None:  # not a new data dir: it keeps its membership
            check_cluster_id(own.cluster_id, cluster_id, join)
            voters = None
    engine = new_pysyncobj_engine(
        config,
        node_id,
        replica_hooks=replica_hooks,
        syncobj_hooks=(wiped_node_votes,) if fault == "wiped-node-votes" else (),
        join=voters,
        join_cluster_id=cluster_id,
    )
    node = RaftNode(config, engine)
    # As leader, a majority of the nodes' clocks decides a jump of cluster time (GET /v1/clock).
    node.set_clock_probe(PeerClocks(config, node_id, ssl_context=ssl_peer))
    await node.start()
    # The leader fires the schedules' due slots (raftq.service.scheduler; idle on followers).
    scheduler = Scheduler(node, config.raft.submit_timeout_ms)
    scheduler.start()
    # TEST ONLY: the positive controls' faults, behind their fence (None in any real use).
    overrides = testfaults.install(fault)  # the fence was read once, above
    app = create_app(
        node,
        server_settings(config),
        forward_ssl=ssl_peer,
        security=security_from_config(config),
        overrides=overrides,
    )
    # ``POST /v1/node/drain`` ends serving as SIGTERM does (then the process exits 0).
    app[DRAIN_KEY] = Drain(stop.set)
    runner = web.AppRunner(
        app, access_log=None, logger=ProtocolLog(logging.getLogger("aiohttp.server"), {})
    )
    readiness: asyncio.Task[None] | None = None
    try:
        await runner.setup()
        # The API socket bound by claim_node (SO_REUSEADDR, as TCPSite's reuse_address).
        site = web.SockSite(runner, claim.take_api_socket(), ssl_context=ssl_server)
        await site.start()
        auth = f"{len(config.tokens)} tokens" if config.tokens else "auth off (loopback)"
        logger.info("node %s: API on %s (%s)", node_id, config.api_url(node_id), auth)
        # systemd (Type=notify): READY=1 once /readyz would answer 200 (raftq.node.notify).
        readiness = asyncio.create_task(notify_when_ready(lambda: node_ready(node)))
        joining = None
        if join is not None:
            joining = asyncio.create_task(ask_to_join(config, node_id, join, ssl_peer))
        await stop.wait()
        if joining is not None:
            joining.cancel()
    finally:
        logger.info("node %s: stopping", node_id)
        notify("STOPPING=1")
        if readiness is not None:
            readiness.cancel()
        await runner.cleanup()
        await scheduler.stop()
        await node.stop()
        claim.release()


def run_node(config: ClusterConfig, node_id: str, *, join: str | None = None) -> int:
    """Blocking entry point of ``raftq serve``: returns the process exit code."""
    # Two threads share the GIL here (asyncio and PySyncObj's tick thread); the default 5 ms
    # switch interval put up to 5 ms on a request whenever both wanted to run. Measured:
    # leader enqueue p50 5.2 -> 4.3 ms, pipelined 1.0k -> 1.7k/s (docs/benchmark-log.md).
    sys.setswitchinterval(0.0005)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, node_id, stop, join=join)

    runloop.run(main())
    return 0
