"""One HTTP attempt against one node, classified as Jepsen wants: ok, fail or info.

Raw aiohttp on purpose (no ``raftq.Client``): the client library retries, which would hide
the outcome of each attempt. The rules follow ``raftq/client/transport.py`` and
``raftq/server`` (which codes are definite):

- ``ok``: a 2xx answer.
- ``fail`` (certainly not applied): the connection could not be made (nothing was sent:
  refused, unreachable, connect timeout); any 4xx (a validation error, or a refusal of the
  state machine such as 409 ``stale_token``, which is a result that changed nothing); 429; 503
  ``no_leader`` / ``not_leader`` / ``overloaded`` (raftq answers these only when the command was
  not proposed, or was proposed and definitely dropped).
- ``info`` (may or may not have been applied): a timeout after the connection was made, a
  reset or a closed connection mid-request, 503 ``outcome_unknown`` and any other 5xx.

Each attempt uses a fresh connection (``force_close``): a stale pooled connection to a node
that was killed would turn a certainly-unsent request into an uncertain one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

__all__ = ["Outcome", "call", "new_session"]

_DEFINITE_503 = frozenset({"no_leader", "not_leader", "overloaded"})


@dataclass(frozen=True, slots=True)
class Outcome:
    type: Literal["ok", "fail", "info"]
    body: Any  # the decoded JSON answer (error answers too), None when there was none
    error: str | None  # the API error code, or what went wrong on the wire
    status: int | None = None


def new_session(token: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )


async def call(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    *,
    timeout_s: float,
    connect_timeout_s: float = 1.0,
) -> Outcome:
    """POST ``body`` as JSON to ``url`` once and classify the result."""
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
    data = json.dumps(body).encode()
    try:
        async with session.post(
            url, data=data, headers={"Content-Type": "application/json"}, timeout=timeout
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
        return Outcome("fail", None, f"connect_error: {type(e).__name__}")
    except TimeoutError:
        return Outcome("info", None, "timeout")
    except aiohttp.ClientError as e:
        return Outcome("info", None, f"connection_error: {type(e).__name__}")
    try:
        decoded: Any = json.loads(raw) if raw else None
    except ValueError:
        decoded = None
    if 200 <= status < 300:
        if decoded is None:
            return Outcome("info", None, "unreadable_answer", status)
        return Outcome("ok", decoded, None, status)
    code = f"http_{status}"
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        code = str(decoded["error"].get("code", code))
    if status == 503:
        return Outcome("fail" if code in _DEFINITE_503 else "info", decoded, code, status)
    if 400 <= status < 500:
        return Outcome("fail", decoded, code, status)
    return Outcome("info", decoded, code, status)
