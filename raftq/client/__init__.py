"""raftq.client: talk to a raftq cluster over HTTP.

``Client`` (asyncio) and ``SyncClient`` (blocking, for scripts) offer the same operations.
Both accept any nodes of the cluster, learn the leader, and retry safely: every mutating call
carries a request id reused on retries, so it is applied at most once. Errors come from
``raftq.errors``: ``Rejected`` (a 4xx refusal; ``reason`` is the API error code), ``AuthError``,
and, once the retry budget is spent, ``NoLeader``, ``Overloaded``, ``OutcomeUnknown`` or
``TransportError``.

``Client.enqueue_job`` / ``Client.job`` return a ``JobHandle`` whose ``wait`` gives the job's
result, or raises ``JobDead`` / ``JobCancelled`` carrying the recorded error.
"""

from raftq.client.client import Client
from raftq.client.handle import JobHandle
from raftq.client.sync import SyncClient, SyncJobHandle
from raftq.client.types import ClaimedJob, LeaseExtended

__all__ = [
    "ClaimedJob",
    "Client",
    "JobHandle",
    "LeaseExtended",
    "SyncClient",
    "SyncJobHandle",
]
