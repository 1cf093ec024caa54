"""A FastAPI service that embeds a raftq node: the queue lives inside the service.

    RAFTQ_NODE=n1 uvicorn examples.fastapi_service:app --port 8001
    RAFTQ_NODE=n2 uvicorn examples.fastapi_service:app --port 8002
    RAFTQ_NODE=n3 uvicorn examples.fastapi_service:app --port 8003

Each copy runs one node of RAFTQ_CONFIG (default: examples/fastapi_service.toml) for the
lifespan of the app: started before the first request, stopped after the last. The node
serves raftq's own API (peers forward there; workers and `raftq` commands use it) on its
`api` address with ``Node.serve()``, next to the service's routes on uvicorn's port:

- ``POST /signup`` with ``{"email": "..."}``: enqueues a welcome email (once per address: the
  job is keyed by it) and answers ``202 {"job_id": ...}``.
- ``GET /signup/{job_id}``: the job's state, and its result once sent.

Workers run anywhere: ``raftq worker examples.worker:send_email --queue emails --nodes
127.0.0.1:7311,127.0.0.1:7312,127.0.0.1:7313``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

import raftq
from raftq.errors import Rejected

CONFIG = Path(os.environ.get("RAFTQ_CONFIG", Path(__file__).with_name("fastapi_service.toml")))


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with raftq.Node(CONFIG, os.environ.get("RAFTQ_NODE", "n1")) as node:
        await node.serve()  # raftq's API on the node's `api` address, until the node stops
        app.state.node = node
        yield


app = FastAPI(lifespan=lifespan)


class Signup(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")


@app.post("/signup", status_code=202)
async def signup(body: Signup, request: Request) -> dict[str, int]:
    node: raftq.Node = request.app.state.node
    # Applied here on the leader, forwarded to it from a follower.
    job_id = await node.enqueue(
        "emails", {"to": body.email}, priority=5, key=f"welcome:{body.email}"
    )
    return {"job_id": job_id}


@app.get("/signup/{job_id}")
async def signup_status(job_id: int, request: Request) -> dict[str, Any]:
    node: raftq.Node = request.app.state.node
    try:
        job = await node.get_job(job_id)
    except Rejected as e:
        raise HTTPException(e.status, e.message) from None
    return {"state": job["state"], "result": job.get("result")}


# --8<-- [end:lifespan]
