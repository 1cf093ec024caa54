"""Per-tenant fairness with queue limits: one tenant's backlog never blocks the others.

    python examples/limits.py --nodes 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003

Sets the "reports" queue's limits (2 jobs leased at once, 1 per tenant, at most 5 claims per
second per tenant), enqueues 6 reports for a big tenant and 1 for each of two small ones,
then claims as 4 workers would and prints, as JSON, the order the tenants were served in and
the most jobs leased at once.
"""

from __future__ import annotations

import argparse
import json

import raftq


# --8<-- [start:limits]
def fair_reports(nodes: str) -> dict[str, object]:
    with raftq.SyncClient(nodes) as client:
        # Replaces the queue's limits (a limit not given: none). Rates are (limit, period_ms).
        client.set_limits("reports", concurrency=2, group_concurrency=1, group_rate=(5, 1000))
        for n in range(6):
            client.enqueue("reports", {"tenant": "big", "n": n}, group="big")
        for tenant in ("small-1", "small-2"):
            client.enqueue("reports", {"tenant": tenant}, group=tenant)
        served: list[str] = []
        most = 0
        while len(served) < 8:
            jobs = client.claim("reports", worker="w", max=4, wait_ms=1000)
            most = max(most, len(jobs))  # never above 2: the queue's concurrency
            for job in jobs:
                served.append(job.payload["tenant"])
                client.ack(job.id, job.token)
        usage = client.limits("reports")["usage"]
    return {"served": served, "most_leased": most, "groups_left": usage["groups"]}
    # --8<-- [end:limits]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="127.0.0.1:7001")
    print(json.dumps(fair_reports(parser.parse_args().nodes)))


if __name__ == "__main__":
    main()
