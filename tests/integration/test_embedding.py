"""Three copies of examples/embedded_service.py form a cluster: a signup enqueued in one is
handled by the worker embedded in another, and the mounted API serves the queue."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from raftq.client import Client
from tests.integration.cluster import Cluster, http_json

REPO = Path(__file__).resolve().parents[2]


def _ready(api: str) -> bool:
    try:
        status, _ = http_json(f"http://{api}/raftq/readyz", timeout=2)
    except OSError:
        return False
    return status == 200


def test_three_embedded_services_form_a_cluster(tmp_path: Path) -> None:
    cluster = Cluster.generate(tmp_path)  # the config and free ports; no `raftq serve` here
    services: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for nid in cluster.ids:
            log = open(tmp_path / f"{nid}.log", "ab")  # noqa: SIM115  # owned by the process
            argv = [sys.executable, "examples/embedded_service.py"]
            argv += ["--config", str(cluster.config_path), "--node", nid]
            services[nid] = subprocess.Popen(
                [*argv, "--work"] if nid == "n3" else argv,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
        deadline = time.monotonic() + 30
        while not all(_ready(cluster.api[n]) for n in cluster.ids):
            assert time.monotonic() < deadline, (tmp_path / "n1.log").read_text()
            time.sleep(0.1)

        # The services' own routes: enqueue in n1 and n2, handled by n3's embedded worker.
        signups: dict[str, int] = {}
        for nid, email in (("n1", "ada@example.com"), ("n2", "grace@example.com")):
            status, body = http_json(cluster.url(nid, "/signup"), {"email": email})
            assert status == 202, body
            signups[email] = body["job_id"]
        status, body = http_json(cluster.url("n2", "/signup"), {"email": "ada@example.com"})
        assert (status, body) == (202, {"job_id": signups["ada@example.com"]})  # keyed
        for email, job_id in signups.items():
            deadline = time.monotonic() + 20
            while True:
                status, job = http_json(cluster.url("n1", f"/signup/{job_id}"))
                if status == 200 and job["state"] == "succeeded":
                    break
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
            assert job["result"] == {"to": email, "sent_by": "n3"}

        # The queue's API is mounted under /raftq on each service: any client can use it.
        async def through_api() -> tuple[dict[str, Any], dict[str, Any]]:
            async with Client(f"http://{cluster.api['n2']}/raftq") as client:
                job = await client.get_job(signups["grace@example.com"], linearizable=True)
                return job, await client.cluster()

        job, view = asyncio.run(through_api())
        assert job["result"] == {"to": "grace@example.com", "sent_by": "n3"}
        assert view["leader"] in cluster.ids
        assert sorted(n["api"] for n in view["nodes"]) == sorted(cluster.api.values())

        # SIGTERM: the service with a worker first, then the others; each exits cleanly.
        for nid in ("n3", "n1", "n2"):
            services[nid].send_signal(signal.SIGTERM)
            assert services[nid].wait(20) == 0, (tmp_path / f"{nid}.log").read_text()[-2000:]
    finally:
        for proc in services.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("which", ["API", "raft"])
def test_a_taken_port_stops_the_example_with_one_line(tmp_path: Path, which: str) -> None:
    # Issue 20: run next to a cluster on the same ports, the example died with a traceback
    # after its node had opened the data dir.
    cluster = Cluster.generate(tmp_path, n=1)
    address = cluster.api["n1"] if which == "API" else cluster.raft["n1"]
    host, port = address.rsplit(":", 1)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind((host, int(port)))
        holder.listen()
        argv = [sys.executable, "examples/embedded_service.py"]
        done = subprocess.run(
            [*argv, "--config", str(cluster.config_path), "--node", "n1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=20,  # the unfixed example with a taken raft port never exits
            check=False,
        )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("embedded_service.py: error: ")
    assert address.replace("127.0.0.1:", "") in line
    assert "in use" in line
    assert not (tmp_path / "data").exists()
