"""The positive controls' faults as wrappers: each one, mounted through
``raftq.server.testfaults.overrides``, breaks the API in its one precise way, and the real
parts (the default) do not. The jepsen-style controls (``tests/chaos``) check that the checker
catches them; these pin the mechanism in-process, over real HTTP servers and ``LocalNode``.
"""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

import raftq
from raftq.core.job import JobState
from raftq.errors import OutcomeUnknown
from raftq.server import Security, ServerSettings, create_app, testfaults
from raftq.server.forward import FORWARDED_HEADER
from raftq.server.peer_auth import PEER_AUTH_HEADER
from tests.support.local_node import LocalNode, serve

PACKAGE = Path(raftq.__file__).parent


@asynccontextmanager
async def mounted(
    fault: str | None, *, followers: int = 0, security: Security | None = None
) -> AsyncIterator[tuple[LocalNode, dict[str, str], aiohttp.ClientSession]]:
    """A leader ``n1`` (and followers ``n2``...) whose APIs are mounted with ``fault``'s
    parts; yields ``(leader, {node: base url}, session)``."""
    leader = LocalNode("n1")
    nodes = {"n1": leader} | {f"n{i + 2}": leader.follower(f"n{i + 2}") for i in range(followers)}
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for nid, node in nodes.items():
            app = create_app(
                node, ServerSettings(), security=security, overrides=testfaults.overrides(fault)
            )
            address = await stack.enter_async_context(serve(app))
            leader.set_address(nid, address)
            urls[nid] = f"http://{address}"
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield leader, urls, session


async def _post(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, dict]:
    async with session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def _leased(session: aiohttp.ClientSession, url: str) -> dict:
    """Enqueue one job on ``url`` and claim it there: the claimed job."""
    status, _ = await _post(session, f"{url}/v1/queues/q/jobs", {"payload": 1})
    assert status == 201
    status, body = await _post(session, f"{url}/v1/queues/q/claim", {"worker": "w"})
    assert status == 200 and len(body["jobs"]) == 1, body
    job: dict = body["jobs"][0]
    return job


def _state(node: LocalNode, job_id: int) -> JobState:
    with node.read() as m:
        return m.jobs[job_id].state


@pytest.mark.parametrize("fault", [None, "nack-drops"])
async def test_nack_drops_completes_the_job(fault: str | None) -> None:
    async with mounted(fault) as (node, urls, session):
        job = await _leased(session, urls["n1"])
        url = f"{urls['n1']}/v1/jobs/{job['id']}/nack"
        status, body = await _post(session, url, {"token": job["token"], "retry_in_ms": 0})
        assert status == 200 and body["state"] == "queued", body  # the answer looks right
        expected = JobState.SUCCEEDED if fault else JobState.QUEUED
        assert _state(node, job["id"]) is expected


@pytest.mark.parametrize("fault", [None, "ignore-limits"])
async def test_ignore_limits_answers_the_limits_but_sets_none(fault: str | None) -> None:
    async with mounted(fault) as (_node, urls, session):
        await _post(session, f"{urls['n1']}/v1/cluster/version", {"version": 3})
        async with session.put(f"{urls['n1']}/v1/queues/q/limits", json={"concurrency": 1}) as r:
            assert r.status == 200
            assert (await r.json())["concurrency"] == 1  # the answer looks right
        for i in range(3):
            await _post(session, f"{urls['n1']}/v1/queues/q/jobs", {"payload": i})
        status, body = await _post(
            session, f"{urls['n1']}/v1/queues/q/claim", {"worker": "w", "max": 3}
        )
        assert status == 200
        assert len(body["jobs"]) == (3 if fault else 1)


@pytest.mark.parametrize("fault", [None, "skip-token-check"])
async def test_skip_token_check_acks_with_any_token(fault: str | None) -> None:
    async with mounted(fault) as (node, urls, session):
        job = await _leased(session, urls["n1"])
        url = f"{urls['n1']}/v1/jobs/{job['id']}/ack"
        status, body = await _post(session, url, {"token": job["token"] + 7})
        if fault:
            assert (status, body["state"]) == (200, "succeeded"), body
            assert _state(node, job["id"]) is JobState.SUCCEEDED
        else:
            assert (status, body["error"]["code"]) == (409, "stale_token"), body
            assert _state(node, job["id"]) is JobState.LEASED


@pytest.mark.parametrize("fault", [None, "follower-claims"])
async def test_follower_claims_answers_from_its_replica(fault: str | None) -> None:
    async with mounted(fault, followers=1) as (node, urls, session):
        status, _ = await _post(session, f"{urls['n1']}/v1/queues/q/jobs", {"payload": 1})
        assert status == 201
        status, body = await _post(session, f"{urls['n2']}/v1/queues/q/claim", {"worker": "w"})
        assert status == 200 and len(body["jobs"]) == 1, body
        job_id = body["jobs"][0]["id"]
        # Broken: nothing leased through the log; real: forwarded, leased by the leader.
        assert _state(node, job_id) is (JobState.QUEUED if fault else JobState.LEASED)


@pytest.mark.parametrize("fault", [None, "ack-before-commit"])
async def test_ack_before_commit_answers_an_unconfirmed_enqueue(fault: str | None) -> None:
    async with mounted(fault) as (node, urls, session):
        node.inject(OutcomeUnknown("the answer was lost"))  # before applying: not committed
        status, body = await _post(session, f"{urls['n1']}/v1/queues/q/jobs", {"payload": 1})
        if fault:
            assert status == 201, body
            with node.read() as m:
                assert body["id"] not in m.jobs  # a made-up id
        else:
            assert (status, body["error"]["code"]) == (503, "outcome_unknown"), body


@pytest.mark.parametrize("fault", [None, "accept-forged-forward"])
async def test_accept_forged_forward_trusts_an_unsigned_marker(fault: str | None) -> None:
    security = Security(secret="a cluster secret of some length")
    async with mounted(fault, security=security) as (_node, urls, session):
        headers = {FORWARDED_HEADER: "n2", PEER_AUTH_HEADER: "v1;1;forged"}
        async with session.get(f"{urls['n1']}/v1/cluster", headers=headers) as resp:
            assert resp.status == (200 if fault else 401), await resp.text()


def test_no_fault_mounts_the_real_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(testfaults.FAULT_ENV, raising=False)
    assert testfaults.overrides(None) is None
    assert testfaults.install(testfaults.active_fault()) is None
    # A fault named without the enabling value is ignored: the real parts.
    monkeypatch.setenv(testfaults.FAULT_ENV, "nack-drops")
    monkeypatch.delenv(testfaults.ENABLE_ENV, raising=False)
    assert testfaults.install(testfaults.active_fault()) is None


def _names(path: Path) -> set[str]:
    """Every module imported by ``path``, and every name and attribute its code uses."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


@pytest.mark.parametrize(
    "module",
    ["server/handlers.py", "server/auth.py", "server/app.py", "service/operations.py"],
)
def test_production_handlers_have_no_test_fault_branch(module: str) -> None:
    """The faults are installed as wrappers by the node assemblies; the handlers, the guard,
    the app and the operations never consult ``testfaults``."""
    names = _names(PACKAGE / module)
    assert not {n for n in names if "testfaults" in n}, module
    assert not names & {"_fault", "_trust_marker", "active_fault"}, module
