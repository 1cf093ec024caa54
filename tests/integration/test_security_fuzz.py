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
import socket
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
                # A drain stops the node by design (its own test: test_drain.py); fuzzing it
                # would end the fuzz of every other route.
                "--exclude-path", "/v1/node/drain",
                "--max-time", str(BUDGET_S), "--workers", "1", "--request-timeout", "10",
                "--seed", "9", "--no-color",
            ],
            capture_output=True, text=True, timeout=BUDGET_S + 60, check=False, cwd=tmp_path,
        )  # fmt: skip
        report = out.stdout[-6000:] + out.stderr[-2000:]
        assert out.returncode == 0, report
        assert "generated" in out.stdout, report  # it did run cases
        # no error of raftq's own (malformed HTTP that aiohttp's parser refuses, such as a NUL
        # in a header, is its 400 and a WARNING line: test_malformed_http_...)
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


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/queues/q/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
    b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS to the HTTP port
]


def test_malformed_http_is_refused_with_400_and_logged_in_one_line(tmp_path: Path) -> None:
    """Requests that are not valid HTTP: 400 from aiohttp's parser, one WARNING line each in
    the node's log (never an ERROR with a traceback: anyone can send them), and the node
    serves normal requests afterwards."""
    c = Cluster.generate(tmp_path, n=1)
    with c:
        c.wait_ready()
        host, port = c.api["n1"].rsplit(":", 1)
        for raw in MALFORMED:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                s.sendall(raw)
                answer = s.recv(200)
            assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), (raw, answer)
        status, body = http_json(c.url("n1", "/v1/queues/after.malformed/jobs"), {"payload": 1})
        assert status == 201, body
        log = (c.root / "n1.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
    refused = [line for line in log.splitlines() if "refused (400)" in line]
    assert len(refused) >= 3 and all(" WARNING " in line for line in refused), log[-3000:]
