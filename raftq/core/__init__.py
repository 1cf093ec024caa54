"""raftq.core: the deterministic job-queue state machine.

Contract (the rest of raftq relies on exactly this):

- Input is committed log entries as bytes (``codec.encode_entry``): a versioned msgpack batch
  of commands, each stamped with ``now_ms`` by the proposer. ``Machine.apply_entry`` returns one
  result per command; ``Machine.apply`` returns them encoded.
- The machine's clock is ``max(clock_ms, now_ms)``: monotonic whatever the proposers' clocks
  do. Lease expiry and delayed jobs are decided by this clock only.
- Apply is total and deterministic: the same entries in the same order give the same results,
  the same ``digest`` and the same snapshot bytes on every replica, in every process (no wall
  clock, randomness, I/O, threads, floats in state, or iteration over sets of strings).
  Malformed bytes and domain refusals are results (``Refusal``); only a corrupt state raises.
- ``write_snapshot`` / ``Machine.restore`` round-trip the state exactly.
- Reads (``job_info``, ``queue_stats``, ``queue_metrics``, ``dead_letters``,
  ``schedule_info``) never mutate:
  replicas stay equal.
"""

from raftq.core.codec import decode_entry, encode_entry
from raftq.core.commands import (
    Ack,
    BatchCallback,
    Cancel,
    Claim,
    Command,
    Configure,
    CreateBatch,
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    EnqueueFlow,
    Fire,
    FlowJob,
    Heartbeat,
    Nack,
    NewJob,
    Pause,
    Purge,
    PutSchedule,
    Release,
    RequeueDead,
    Resume,
    SetLimits,
    SetSchedulePaused,
    Tick,
    TriggerSchedule,
)
from raftq.core.errors import CodecError, CorruptStateError, RaftqError
from raftq.core.job import BatchInfo, JobFlow, JobInfo, JobState
from raftq.core.machine import Machine
from raftq.core.results import (
    Acked,
    BatchCreated,
    Cancelled,
    Claimed,
    Configured,
    Enqueued,
    Extended,
    Fired,
    Lease,
    LimitsSet,
    Nacked,
    Paused,
    Purged,
    Reason,
    Refusal,
    Released,
    Requeued,
    Result,
    Resumed,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
    Ticked,
    VersionEnabled,
)
from raftq.core.schedules import ScheduleInfo
from raftq.core.snapshot import snapshot_bytes, write_snapshot
from raftq.core.stats import HistogramData, LimitsView, QueueMetrics, QueueStats

__all__ = [
    "Ack",
    "Acked",
    "BatchCallback",
    "BatchCreated",
    "BatchInfo",
    "Cancel",
    "Cancelled",
    "Claim",
    "Claimed",
    "CodecError",
    "Command",
    "Configure",
    "Configured",
    "CorruptStateError",
    "CreateBatch",
    "DeleteSchedule",
    "EnableVersion",
    "Enqueue",
    "EnqueueFlow",
    "Enqueued",
    "Extended",
    "Fire",
    "Fired",
    "FlowJob",
    "Heartbeat",
    "HistogramData",
    "JobFlow",
    "JobInfo",
    "JobState",
    "Lease",
    "LimitsSet",
    "LimitsView",
    "Machine",
    "Nack",
    "Nacked",
    "NewJob",
    "Pause",
    "Paused",
    "Purge",
    "Purged",
    "PutSchedule",
    "QueueMetrics",
    "QueueStats",
    "RaftqError",
    "Reason",
    "Refusal",
    "Release",
    "Released",
    "RequeueDead",
    "Requeued",
    "Result",
    "Resume",
    "Resumed",
    "ScheduleDeleted",
    "ScheduleInfo",
    "SchedulePaused",
    "SchedulePut",
    "SetLimits",
    "SetSchedulePaused",
    "Tick",
    "Ticked",
    "TriggerSchedule",
    "VersionEnabled",
    "decode_entry",
    "encode_entry",
    "snapshot_bytes",
    "write_snapshot",
]
