"""raftq.worker: run jobs with plain Python functions.

``Worker`` claims jobs for its free slots, runs the handler registered for each job's queue
(``async def`` on the event loop, ``def`` in a thread pool), heartbeats while it runs, and acks
the return value or nacks the exception. ``raftq worker MODULE:ATTR`` runs one from the
command line. See ``docs/guide.md``.
"""

from raftq.errors import Retry
from raftq.worker.job import Job, describe_error
from raftq.worker.options import WorkerOptions
from raftq.worker.runner import Handler
from raftq.worker.source import JobSource
from raftq.worker.worker import Worker

__all__ = ["Handler", "Job", "JobSource", "Retry", "Worker", "WorkerOptions", "describe_error"]
