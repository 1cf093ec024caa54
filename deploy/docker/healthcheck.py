"""The raftq image's HEALTHCHECK: exit 0 when this container's node answers GET /readyz with
200 (a leader known, the log caught up), else 1 with one line saying why.

The node binds the API address its config gives it (not loopback), so the address is read from
$RAFTQ_CONFIG, for node $RAFTQ_NODE (default: the host name), as `raftq serve` reads them.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import urllib.request

from raftq.config import load_config


def main() -> int:
    node = os.environ.get("RAFTQ_NODE") or socket.gethostname()
    config = load_config(os.environ["RAFTQ_CONFIG"])
    context = None
    if config.tls is not None:
        context = ssl.create_default_context(cafile=os.environ.get("RAFTQ_CA") or None)
    url = f"{config.api_url(node)}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as e:  # URLError and HTTPError (503: not ready) are OSErrors
        print(f"{url}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
