"""An aiohttp web service that embeds a raftq node: no separate queue servers to run.

Three copies of it form a cluster, one per node of a config file (default:
``examples/embedded_service.toml``, on ports 7301..7303 and 8301..8303 and with its own data
dir, so it runs next to ``make run``). Each node's ``api`` address in the config is where its
copy of the service listens; the service mounts the raftq HTTP API under ``/raftq`` next to
its own routes, so clients and workers reach the queue at ``http://<api>/raftq``, and the
nodes forward to the leader there.

    python examples/embedded_service.py --node n1
    python examples/embedded_service.py --node n2
    python examples/embedded_service.py --node n3 --work

The service's own routes:

- ``POST /signup`` with ``{"email": "..."}``: enqueues a welcome email (once per address:
  the job is keyed by it) and answers ``202 {"job_id": ...}``.
- ``GET /signup/{job_id}``: the job's state, and its result once sent.

With ``--work`` the service also runs a worker for the "emails" queue in-process:
``raftq.Worker(client=node)`` claims through the embedded node (no HTTP hop on the leader).
SIGINT/SIGTERM stops it: the worker first, then the HTTP server, then the node. A port taken
by another process, or a node already running on the data dir, is one line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

import raftq
from raftq.errors import ConfigError, Rejected, StartRefused

NODE: web.AppKey[raftq.Node] = web.AppKey("node", raftq.Node)
CONFIG = Path(__file__).with_name("embedded_service.toml")


# --8<-- [start:service]
async def signup(request: web.Request) -> web.Response:
    node = request.app[NODE]
    body = await request.json()
    email = body.get("email") if isinstance(body, dict) else None
    if not isinstance(email, str) or "@" not in email:
        return web.json_response({"error": "give an email address"}, status=400)
    # A coroutine on the embedded node: applied locally on the leader, forwarded otherwise.
    job_id = await node.enqueue("emails", {"to": email}, priority=5, key=f"welcome:{email}")
    return web.json_response({"job_id": job_id}, status=202)


async def signup_status(request: web.Request) -> web.Response:
    node = request.app[NODE]
    try:
        job = await node.get_job(int(request.match_info["job_id"]))
    except (Rejected, ValueError):
        return web.json_response({"error": "no such job"}, status=404)
    return web.json_response({k: job[k] for k in ("id", "state", "attempts", "result", "error")})


def build_app(node: raftq.Node) -> web.Application:
    app = web.Application()
    app[NODE] = node
    app.router.add_post("/signup", signup)
    app.router.add_get("/signup/{job_id}", signup_status)
    node.mount(app, prefix="/raftq")  # the queue's HTTP API, next to the service's routes
    return app


# --8<-- [end:service]


def make_worker(node: raftq.Node) -> raftq.Worker:
    """A worker that claims through the embedded node."""
    # --8<-- [start:worker]
    worker = raftq.Worker(client=node, concurrency=4, name=f"service-{node.node_id}")

    @worker.handler("emails")
    async def welcome_email(job: raftq.Job) -> dict[str, Any]:
        job.logger.info("welcome email to %s", job.payload["to"])
        await asyncio.sleep(0.01)  # the call to the mail service
        return {"to": job.payload["to"], "sent_by": node.node_id}

    # --8<-- [end:worker]
    return worker


# --8<-- [start:lifecycle]
async def serve(config: str, node_id: str, work: bool, stop: asyncio.Event) -> None:
    node = raftq.Node(config, node_id)
    app = build_app(node)
    me = node.config.node(node_id)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        # The HTTP port first: if another process holds it, this fails before the node
        # touches its data dir. node.start() checks the raft port and locks the data dir.
        await web.TCPSite(runner, me.api_host, me.api_port).start()
        await node.start()
    except BaseException:
        await runner.cleanup()
        raise
    try:
        worker = make_worker(node) if work else None
        working = asyncio.create_task(worker.run()) if worker else None
        await stop.wait()
        if worker is not None and working is not None:
            worker.stop()  # graceful: running jobs finish or are handed back
            await working
    finally:
        await runner.cleanup()  # requests in flight finish while the node still runs
        await node.stop()


# --8<-- [end:lifecycle]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG), help="the cluster's TOML file")
    parser.add_argument("--node", required=True, help="which node of the config this is")
    parser.add_argument("--work", action="store_true", help="also run an emails worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.config, args.node, args.work, stop)

    try:
        asyncio.run(run())
    except (ConfigError, StartRefused) as e:  # what is wrong and what to do, in one line
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the service's own HTTP port
        if e.errno != errno.EADDRINUSE:
            raise
        print(
            f"{parser.prog}: error: {e}: another process listens on node {args.node}'s api "
            f"address; stop it, or give this node another api address in {args.config}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
