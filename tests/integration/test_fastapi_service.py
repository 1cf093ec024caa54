"""examples/fastapi_service.py as its docstring runs it: three uvicorn processes, each embedding
one node in the app's lifespan and serving raftq's API with ``Node.serve()``. A signup on a
follower's service is forwarded to the leader; a worker on the raftq API completes the job;
the status route shows the result; SIGTERM ends each service's lifespan, which stops its node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftq.client import SyncClient
from tests.integration.cluster import free_ports

REPO = Path(__file__).resolve().parents[2]


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[str], str, list[subprocess.Popen[bytes]], Path]]:
    root = tmp_path_factory.mktemp("fastapi")
    ports = free_ports(9)
    toml = ['[cluster]\nname = "fastapi-test"\ndata_dir = "data"\n']
    for i in range(3):
        toml.append(
            f'[[nodes]]\nid = "n{i + 1}"\nraft = "127.0.0.1:{ports[i]}"\n'
            f'api = "127.0.0.1:{ports[3 + i]}"\n'
        )
    config = root / "cluster.toml"
    config.write_text("\n".join(toml))
    procs = []
    for i in range(3):
        env = {**os.environ, "RAFTQ_CONFIG": str(config), "RAFTQ_NODE": f"n{i + 1}"}
        argv = [sys.executable, "-m", "uvicorn", "examples.fastapi_service:app",
                "--port", str(ports[6 + i]), "--log-level", "info"]  # fmt: skip
        log = open(root / f"n{i + 1}.log", "wb")  # noqa: SIM115 - owned by the process
        procs.append(subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log))
        log.close()
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports[6:]]
        yield urls, ",".join(f"127.0.0.1:{p}" for p in ports[3:6]), procs, root
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def test_a_fastapi_service_embeds_a_node(
    services: tuple[list[str], str, list[subprocess.Popen[bytes]], Path],
) -> None:
    urls, nodes, procs, root = services
    logs = [root / f"n{i + 1}.log" for i in range(3)]
    with SyncClient(nodes) as client:
        deadline = time.monotonic() + 30
        while True:  # every service is up and the cluster has a leader
            try:
                leader = client.cluster().get("leader")
                if leader and all(_http("GET", f"{u}/openapi.json")[0] == 200 for u in urls):
                    break
            except Exception:  # not listening yet
                pass
            assert time.monotonic() < deadline, "the services did not come up"
            time.sleep(0.2)
        follower = next(u for i, u in enumerate(urls) if f"n{i + 1}" != leader)
        status, body = _http("POST", f"{follower}/signup", {"email": "ada@example.com"})
        assert status == 202, body
        job_id = body["job_id"]
        again = _http("POST", f"{urls[0]}/signup", {"email": "ada@example.com"})
        assert again == (202, {"job_id": job_id})  # keyed: the same job
        assert _http("POST", f"{urls[1]}/signup", {"email": "nope"})[0] == 422
        (job,) = client.claim("emails", worker="w", wait_ms=5_000)
        client.ack(job.id, job.token, {"sent": True})
        deadline = time.monotonic() + 10
        while (shown := _http("GET", f"{follower}/signup/{job_id}"))[1]["state"] != "succeeded":
            assert time.monotonic() < deadline, shown  # the follower applies the ack soon
            time.sleep(0.05)
        assert shown == (200, {"state": "succeeded", "result": {"sent": True}})
        assert _http("GET", f"{urls[0]}/signup/999999")[0] == 404
    for p in procs:
        p.send_signal(signal.SIGTERM)
    # uvicorn shuts the app down (the lifespan's end stops the node), then raises the signal
    # it caught again, as a process stopped by it: -SIGTERM is its clean exit.
    assert [p.wait(30) for p in procs] == [-signal.SIGTERM] * 3
    for log in logs:
        assert "Application shutdown complete." in log.read_text(), log.read_text()[-2000:]
