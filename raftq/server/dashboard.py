"""``GET /`` for browsers: the dashboard, one self-contained HTML page shipped in the package
(``static/dashboard.html``: inline CSS and JavaScript, no build step, no CDN, works offline).

The page talks only to the node that served it, through the v1 API with relative URLs (so it
works under a mount prefix): ``v1/cluster?peers=true``, ``v1/queues``, ``v1/queues/{q}/dead``
and ``POST v1/queues/{q}/dead/requeue``. Rates and the chart come from the ``totals``
counters of two successive readings (every 2 s), kept in the page for the last 5 minutes.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from aiohttp import web

__all__ = ["dashboard_html", "dashboard_response", "wants_html"]


@cache
def dashboard_html() -> bytes:
    return files("raftq.server").joinpath("static/dashboard.html").read_bytes()


def wants_html(request: web.BaseRequest) -> bool:
    """A browser asking for a page (``Accept: text/html``), rather than an API client."""
    return "text/html" in request.headers.get("Accept", "")


def dashboard_response() -> web.Response:
    return web.Response(
        body=dashboard_html(),
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            # Everything is inline and same-origin: forbid anything else.
            "Content-Security-Policy": "default-src 'none'; connect-src 'self'; "
            "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
        },
    )
