"""``raftq serve`` installs a positive control's fault (a wrapper of the API's parts) only
behind its fence: a real node process, with and without the enabling value."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftq.server.testfaults import ENABLE_ENV, ENABLE_VALUE, FAULT_ENV
from tests.integration.cluster import Cluster, http_json


def _ack_with_a_wrong_token(c: Cluster) -> tuple[int, object]:
    status, _ = http_json(c.url("n1", "/v1/queues/q/jobs"), {"payload": 1})
    assert status == 201
    status, body = http_json(c.url("n1", "/v1/queues/q/claim"), {"worker": "w"})
    assert status == 200 and isinstance(body, dict) and len(body["jobs"]) == 1, body
    job = body["jobs"][0]
    return http_json(c.url("n1", f"/v1/jobs/{job['id']}/ack"), {"token": job["token"] + 7})


@pytest.mark.parametrize("enabled", [True, False])
def test_serve_installs_the_fault_only_behind_its_fence(tmp_path: Path, enabled: bool) -> None:
    c = Cluster.generate(tmp_path, 1)
    c.env["n1"] = {FAULT_ENV: "skip-token-check", ENABLE_ENV: ENABLE_VALUE if enabled else "no"}
    with c:
        c.wait_ready()
        status, body = _ack_with_a_wrong_token(c)
        log = c.log_tail("n1", 200)
    if enabled:
        assert (status, body) == (200, {"id": 1, "state": "succeeded"}), log
        assert "TEST FAULT 'skip-token-check' IS ACTIVE" in log
    else:
        assert status == 409 and isinstance(body, dict), body
        assert body["error"]["code"] == "stale_token"
        assert "ignoring RAFTQ_TEST_FAULT=skip-token-check" in log
