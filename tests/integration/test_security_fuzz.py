"""schemathesis against a live node, within a bounded budget: no 5xx, every answer as the
OpenAPI document says (status, content type, body schema, headers), auth enforced where the
document says so, and the node serves normal traffic afterwards.

The check ``positive_data_acceptance`` is left out: payloads are "any JSON value", but the
node also refuses integers beyond 64 bits, nesting deeper than its limit and payloads over
``max_payload_bytes`` (400/413, documented in words), which a JSON schema cannot say.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.cluster import Cluster, http_json

TOKEN = "fuzz-admin-token-0123456789"
BUDGET_S = 40  # schemathesis --max-time: the whole run stays well under 90 s


def _schemathesis() -> list[str]:
    exe = Path(sys.executable).parent / "schemathesis"
    found = str(exe) if exe.exists() else shutil.which("schemathesis")
    assert found, "schemathesis is a dev dependency (pyproject.toml): `make test` installs it"
    return [found]


def test_schemathesis_fuzz_of_a_live_node(tmp_path: Path) -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    extra = (
        "[limits]\nmax_wait_ms = 200\n\n"  # long-polls end quickly: the fuzzer sends huge wait_ms
        f'[[auth.tokens]]\nname = "fuzz"\nsha256 = "{digest}"\nrole = "admin"\n'
    )
    c = Cluster.generate(tmp_path, n=1, extra=extra)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    c.headers = auth
    with c:
        c.wait_ready()
        out = subprocess.run(
            [
                *_schemathesis(), "run", c.url("n1", "/v1/openapi.json"),
                "--header", f"Authorization: Bearer {TOKEN}",
                "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                "--max-time", str(BUDGET_S), "--workers", "1", "--request-timeout", "10",
                "--seed", "9", "--no-color",
            ],
            capture_output=True, text=True, timeout=BUDGET_S + 60, check=False, cwd=tmp_path,
        )  # fmt: skip
        report = out.stdout[-6000:] + out.stderr[-2000:]
        assert out.returncode == 0, report
        assert "generated" in out.stdout, report  # it did run cases
        # no error of raftq's own (aiohttp logs the malformed HTTP it refuses itself, such as
        # a NUL in a header, at ERROR: that is its 400, not ours)
        errors = [
            line
            for line in (c.root / "n1.log").read_text().splitlines()
            if " ERROR " in line and " raftq." in line
        ]
        assert not errors, errors[:5]
        # still serving normal traffic: enqueue, claim, ack, and ready
        status, body = http_json(c.url("n1", "/v1/queues/after.fuzz/jobs"), {"payload": 7},
                                 headers=auth)  # fmt: skip
        assert status == 201, body
        status, claimed = http_json(c.url("n1", "/v1/queues/after.fuzz/claim"),
                                    {"worker": "w"}, headers=auth)  # fmt: skip
        assert status == 200 and claimed["jobs"][0]["payload"] == 7, claimed
        job = claimed["jobs"][0]
        status, body = http_json(c.url("n1", f"/v1/jobs/{job['id']}/ack"),
                                 {"token": job["token"]}, headers=auth)  # fmt: skip
        assert status == 200, body
        assert http_json(c.url("n1", "/readyz"))[0] == 200
