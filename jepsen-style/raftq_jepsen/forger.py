"""A forger on a node's own host: requests that carry the node-to-node marker without a valid
signature (the forged-forward nemesis runs it with ``ip netns exec jepsen-nK``).

Every request claims to be relayed by a node (``X-Raftq-Forwarded: <a real node id>``) but its
``X-Raftq-Peer-Auth`` is missing or garbage; half carry the run's valid API token. A node must
answer every one 401: with the marker trusted, a request without a token would get a node's
reader rights, and one with a token would skip the one-hop rule and audit under a made-up
client. One JSON line per request on stdout: ``{"url", "method", "path", "kind", "status",
"error"}`` (``status`` null when no answer came).

Usage: python -m raftq_jepsen.forger --token=T --node-id nK --seconds S URL [URL...]
(``argv``: the token as ``--token=T``, since a random token may begin with ``-``).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import secrets
import sys
import time
from urllib.parse import urlsplit

__all__ = ["KINDS", "argv", "main", "parser"]

# (kind, with token?, signature header value or None): every one must be refused 401.
KINDS: tuple[tuple[str, bool, str | None], ...] = (
    ("no-token-no-sig", False, None),
    ("token-no-sig", True, None),
    ("no-token-garbage-sig", False, "garbage"),
    ("token-garbage-sig", True, "garbage"),
    ("token-wellformed-wrong-sig", True, "wellformed"),
    ("no-token-wellformed-wrong-sig", False, "wellformed"),
)
# Routes: a read (reader rights would do) and a write on a job that does not exist (changes
# nothing even if it were served: 404 then, which the checker flags as well as a 2xx).
ROUTES = (("GET", "/v1/queues/q0", None), ("POST", "/v1/jobs/281474976710000/ack", b"{}"))


def _signature(style: str) -> str:
    if style == "garbage":
        return secrets.choice(["", "v1", "v1;x;y", "v2;1;00", secrets.token_hex(8)])
    # The right shape and a fresh timestamp, but a MAC made without the cluster secret.
    return f"v1;{time.time_ns() // 1_000_000};{secrets.token_hex(32)}"


def one(url: str, method: str, path: str, body: bytes | None, kind: tuple[str, bool, str | None],
        token: str, node_id: str) -> dict[str, object]:  # fmt: skip
    name, with_token, sig = kind
    headers = {"X-Raftq-Forwarded": node_id, "X-Raftq-Client": "203.0.113.7"}
    if with_token:
        headers["Authorization"] = f"Bearer {token}"
    if sig is not None:
        headers["X-Raftq-Peer-Auth"] = _signature(sig)
    if body is not None:
        headers["Content-Type"] = "application/json"
    parts = urlsplit(url)
    record: dict[str, object] = {"url": url, "method": method, "path": path, "kind": name,
                                 "status": None, "error": None}  # fmt: skip
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        record["status"] = resp.status
    except (OSError, http.client.HTTPException) as e:
        record["error"] = type(e).__name__
    finally:
        conn.close()
    return record


def argv(token: str, node_id: str, seconds: float, urls: list[str]) -> list[str]:
    """The forger's arguments. ``--token=T`` in one word: a token that begins with ``-`` (as
    ``secrets.token_urlsafe`` makes one in 64) would otherwise read as an option, and the
    forger would exit at once (it did, in CI, twice)."""
    return [f"--token={token}", "--node-id", node_id, "--seconds", f"{seconds:.1f}", *urls]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftq_jepsen.forger")
    p.add_argument("urls", nargs="+")
    p.add_argument("--token", required=True)
    p.add_argument("--node-id", required=True, help="the node id the marker claims")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--interval", type=float, default=0.1)
    return p


def main(args_in: list[str] | None = None) -> int:
    args = parser().parse_args(args_in)
    deadline = time.monotonic() + args.seconds
    combos = itertools.cycle(itertools.product(args.urls, ROUTES, KINDS))
    while time.monotonic() < deadline:
        url, (method, path, body), kind = next(combos)
        print(json.dumps(one(url, method, path, body, kind, args.token, args.node_id)),
              flush=True)  # fmt: skip
        time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
