"""A zombie worker: the worker loop in its own OS process, so kill -9 and SIGSTOP are real.

Protocol with the harness (one JSON object per line on stdout, one word per line on stdin):
``{"msg": "invoke", "f", "value", "node"}`` then wait for ``go`` (send the request) or ``stop``
(exit without sending); after the answer ``{"msg": "complete", "type", "value", "error"}``;
``{"msg": "holding", "holding": bool}`` when it starts or stops holding leases. The harness
stamps the events, so its history stays the single writer.

Run as ``python -m raftq_jepsen.zombie '<json args>'`` (see ``Workload.spawn_zombie``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

from raftq_jepsen.client import new_session
from raftq_jepsen.history import EventType, OpName
from raftq_jepsen.workload import NodeRef, WorkloadParams, worker_loop

__all__ = ["main"]


class PipeRecorder:
    def __init__(self) -> None:
        self._stdin = sys.stdin

    def _send(self, msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def invoke(self, f: OpName, value: dict[str, Any], node: str) -> bool:
        self._send({"msg": "invoke", "f": f, "value": value, "node": node})
        # Blocking on purpose: nothing else runs in this process while it waits.
        answer = self._stdin.readline().strip()
        return answer == "go"

    async def complete(self, type_: EventType, value: Any, error: str | None) -> None:
        self._send({"msg": "complete", "type": type_, "value": value, "error": error})

    async def holding(self, flag: bool) -> None:
        self._send({"msg": "holding", "holding": flag})


async def _run(args: dict[str, Any]) -> None:
    prm = args["params"]
    params = WorkloadParams(
        queues=tuple(prm["queues"]),
        claim_groups=tuple(tuple(g) for g in prm["claim_groups"]),
        wait_ms=prm["wait_ms"],
        timeout_s=prm["timeout_s"],
        heartbeat_p=prm["heartbeat_p"],
        nack_p=prm["nack_p"],
        release_p=prm["release_p"],
    )
    nodes = [NodeRef(nid, url) for nid, url in args["nodes"]]
    rec = PipeRecorder()
    async with new_session(args["token"]) as session:
        await worker_loop(
            rec,
            session,
            nodes,
            params,
            args["name"],
            random.Random(args["seed"]),
            lease_ms=prm["lease_ms"],
            hold_s=(prm["hold_s"][0], prm["hold_s"][1]),
            on_holding=rec.holding,
        )


def main() -> int:
    try:
        asyncio.run(_run(json.loads(sys.argv[1])))
    except (BrokenPipeError, KeyboardInterrupt):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
