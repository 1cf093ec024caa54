"""Commands: what a proposer asks the machine to do.

Every command carries ``now_ms`` (the proposer's clock, stamped by the leader) and an optional
``request_id``: a repeat of the same command under its request id inside the window is answered
with the first answer and is not applied again; another command under a known id is refused
(``request_id_reused``, see ``requests.py``). The codec (``codec.py``) checks types and
shapes; the machine checks domain rules and answers a violated rule with ``Refusal``, never
an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Ack",
    "BatchCallback",
    "Cancel",
    "Claim",
    "Command",
    "Configure",
    "CreateBatch",
    "DeleteSchedule",
    "EnableVersion",
    "Enqueue",
    "EnqueueFlow",
    "Fire",
    "FlowJob",
    "Heartbeat",
    "Nack",
    "NewJob",
    "Pause",
    "Purge",
    "PutSchedule",
    "Release",
    "RequeueDead",
    "Resume",
    "SetLimits",
    "SetSchedulePaused",
    "Tick",
    "TriggerSchedule",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """One job to create. ``payload`` is opaque encoded bytes (the edges choose the encoding).

    Exactly one of ``delay_ms`` / ``run_at_ms`` may be set; neither means "ready now".
    ``lease_ms`` and ``max_attempts`` fall back to the machine defaults when ``None``.
    ``group`` (named like a queue) is the job's fairness group in its queue (see ``SetLimits``);
    ``None`` is the queue's implicit group. A job with a group needs log version 3.
    """

    payload: bytes
    priority: int = 0
    delay_ms: int | None = None
    run_at_ms: int | None = None
    key: str | None = None
    max_attempts: int | None = None
    lease_ms: int | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Enqueue:
    """Create jobs in one queue, all or none.

    Preconditions: valid queue name; every job valid (priority 0..9, limits in ``limits.py``).
    Effects: the queue is created on first use; each job gets the next id; a job whose key is
    live in the queue's dedup table is not created, and the existing id is returned instead.
    Refusals: ``invalid`` (any job invalid: nothing is created), ``too_many_queues``.
    """

    now_ms: int
    request_id: str | None = None
    queue: str
    jobs: tuple[NewJob, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """Lease up to ``max`` ready jobs from ``queues``, best first over all of them.

    Order: highest priority, then earliest ready time, then lowest id; paused and unknown
    queues give nothing. A queue with limits (``SetLimits``) offers the best job of the group
    whose turn it is, and nothing while it is at its concurrency or rate. Each job leased gets
    a fresh fencing token and ``attempts + 1``.
    ``lease_ms`` overrides the jobs' own lease length. Refusals: ``invalid``.
    """

    now_ms: int
    request_id: str | None = None
    queues: tuple[str, ...]
    worker: str
    max: int = 1
    lease_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Extend a live lease to ``now + lease_ms`` (or the lease length it was claimed with).

    ``progress`` and ``checkpoint`` (opaque encoded bytes, at most ``MAX_PROGRESS_BYTES``
    each), when set, replace the job's latest ones; a heartbeat with either is a command of log
    version 3 (its own tag). The checkpoint outlives the attempt: the next claim hands it out.
    A job cancelled while this lease was live (``Cancel``) answers its token with
    ``Extended(cancel's cluster time, cancel_requested=True)`` and changes nothing.
    Refusals: ``not_found``, ``stale_token`` (token is not the current lease's),
    ``lease_expired`` (cluster time passed the lease's end), ``finished``, ``invalid``.
    """

    now_ms: int
    request_id: str | None = None
    job_id: int
    token: int
    lease_ms: int | None = None
    progress: bytes | None = None
    checkpoint: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Complete a leased job with ``result`` (opaque bytes or ``None``): state ``succeeded``.

    Refusals: ``not_found``, ``stale_token``, ``lease_expired``.
    """

    now_ms: int
    request_id: str | None = None
    job_id: int
    token: int
    result: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack:
    """Fail one attempt of a leased job.

    Effects: with attempts left, the job is retried after ``retry_in_ms`` or the exponential
    backoff (``backoff.py``); without, it is dead-lettered with ``error``.
    Refusals: ``not_found``, ``stale_token``, ``lease_expired``, ``invalid``.
    """

    now_ms: int
    request_id: str | None = None
    job_id: int
    token: int
    error: str | None = None
    retry_in_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """Give a leased job back unstarted (log version 4): a worker that claimed it will not run
    it (it stops, or its stream closed before the job was handed out).

    Effects: the job is queued again at once, in the place it had before the claim (its
    priority and ready time are unchanged), and the claim's attempt is undone (``attempts``
    goes back down by one), so a hand-back never moves a job closer to the dead letters.
    Nothing else of the job changes (its last error and checkpoint stay).
    Refusals: ``not_found``, ``stale_token``, ``lease_expired``, ``finished``.
    """

    now_ms: int
    request_id: str | None = None
    job_id: int
    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    """Cancel a job that is queued, delayed or leased (its lease is revoked).

    Effects: the job is ``cancelled`` at once (waiting dependants cascade, limit slots are
    freed). A job leased with a live lease also gets ``cancel_requested`` once log version 3
    is enabled: that lease's heartbeat tells its worker to stop (``Heartbeat``).
    Refusals: ``not_found``, ``finished`` (already succeeded, dead or cancelled).
    """

    now_ms: int
    request_id: str | None = None
    job_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequeueDead:
    """Move dead letters of ``queue`` back to queued with their attempts reset.

    ``job_ids`` ``None`` means all of them, oldest first; ids that are not dead letters of
    the queue are skipped and not counted. A requeued job takes its idempotency key back
    unless another job holds it live. Refusals: ``invalid``.
    """

    now_ms: int
    request_id: str | None = None
    queue: str
    job_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Purge:
    """Delete every queued, delayed and dead job of ``queue``; leased jobs run on.

    Cost is linear in the queue's size: an admin operation, not a hot path.
    """

    now_ms: int
    request_id: str | None = None
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pause:
    """Stop handing out jobs of ``queue``; enqueues are still accepted. Creates the queue."""

    now_ms: int
    request_id: str | None = None
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    """Undo ``Pause``. Creates the queue."""

    now_ms: int
    request_id: str | None = None
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Configure:
    """Set a queue's windows; ``None`` keeps the current value. Creates the queue.

    ``dedup_window_ms``: how long a finished job's key still deduplicates (0..24 h). A new
    window applies at once to every key still live (collected jobs' included); a key that
    already expired stays expired.
    ``retention_ms``: how long succeeded and cancelled jobs stay readable (0..7 d).
    """

    now_ms: int
    request_id: str | None = None
    queue: str
    dedup_window_ms: int | None = None
    retention_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLimits:
    """Replace the limits of ``queue``; ``None`` means no such limit. Creates the queue.

    ``concurrency``: leased jobs of the queue at most; ``group_concurrency``: leased jobs of one
    group at most (1..1,000,000). ``rate_limit`` per ``rate_period_ms``: claims (starts) of the
    queue within any window of ``rate_period_ms`` at most; ``group_rate_*`` the same per group
    (limit 1..100,000, period 1 ms..24 h; give both or neither). The caps are decided when a job
    is handed out (``Claim``) and a slot is held by the lease (ack, nack, cancel and expiry
    free it); jobs leased beyond a lowered cap run on. While any limit is set, a claim serves
    the queue's groups round-robin (docs/state-machine.md, "Limits and groups").
    Refusals: ``invalid``, ``too_many_queues``. Log version 3.
    """

    now_ms: int
    request_id: str | None = None
    queue: str
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period_ms: int | None = None
    group_concurrency: int | None = None
    group_rate_limit: int | None = None
    group_rate_period_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """Advance cluster time: expire leases, release due delayed jobs, collect old results."""

    now_ms: int
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EnableVersion:
    """Raise the cluster's enabled log version to ``version`` (it never goes down).

    A command whose log version (``codec.command_version``) is above the enabled one is refused
    (``version_not_enabled``), and the leader never proposes one: nodes still on an older raftq
    would stop at it. So the leader proposes ``EnableVersion(n)`` only once every member runs a
    raftq that applies version ``n``. Itself of version 2, it is never gated.
    Refusals: ``invalid`` (version out of 1..65535).
    """

    now_ms: int
    request_id: str | None = None
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PutSchedule:
    """Create or replace the schedule ``name`` (log version 3).

    Exactly one of ``every_ms`` / ``cron`` is set. The machine does not read ``cron`` nor
    ``tz``: it keeps them for display, and the leader computes their slots (the machine stores
    and compares integers only). ``overlap`` is ``allow`` or ``skip``; the job fields
    (``payload``, ``priority``, ``max_attempts``, ``lease_ms``) are those of ``NewJob``.
    Effects: a new schedule's ``last_slot_ms`` is cluster time, so only slots after its
    creation fire; a replaced one keeps its ``last_slot_ms``, last job and counters, so a
    slot that fired never fires again. Creates no queue (the first fire does).
    Refusals: ``invalid`` (a field out of range), ``too_many_schedules``.
    """

    now_ms: int
    request_id: str | None = None
    name: str
    queue: str
    every_ms: int | None = None
    cron: str | None = None
    tz: str | None = None
    payload: bytes
    priority: int = 0
    max_attempts: int | None = None
    lease_ms: int | None = None
    overlap: str = "allow"
    catchup_ms: int = 0
    paused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteSchedule:
    """Remove the schedule ``name``; jobs it enqueued stay (log version 3).

    Refusals: ``not_found``.
    """

    now_ms: int
    request_id: str | None = None
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    """The leader fires slot ``slot_ms`` of schedule ``name`` (log version 3).

    Preconditions: the schedule exists, is not paused, ``last_slot_ms < slot_ms <= clock``.
    Effects, in this one entry: ``last_slot_ms = slot_ms``, and one job is enqueued into the
    schedule's queue carrying ``schedule = name`` and ``fire_ms = slot_ms``; except with
    ``overlap = skip`` while the previous fire's job is unfinished: then the slot is recorded as
    skipped and no job is made. So no slot fires twice, and slots fire in increasing order.
    Refusals: ``not_found``, ``schedule_paused``, ``stale_slot`` (not above ``last_slot_ms``),
    ``invalid`` (a slot after cluster time), and the enqueue's own (``too_many_queues``).
    """

    now_ms: int
    request_id: str | None = None
    name: str
    slot_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerSchedule:
    """Fire schedule ``name`` once by hand, now (log version 3): one job with ``fire_ms`` the
    cluster time, whatever ``paused`` and ``overlap`` say. It consumes no slot
    (``last_slot_ms`` is unchanged), and its job becomes the one ``overlap = skip`` watches.
    Refusals: ``not_found``, and the enqueue's own.
    """

    now_ms: int
    request_id: str | None = None
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetSchedulePaused:
    """Pause (``paused``) or resume schedule ``name`` (log version 3). Resuming moves
    ``last_slot_ms`` up to cluster time: slots that came while paused never fire.
    Refusals: ``not_found``.
    """

    now_ms: int
    request_id: str | None = None
    name: str
    paused: bool


# -- dependencies and batches (log version 3; rules in ``deps.py`` and ``batches.py``) -------


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowJob:
    """A ``NewJob`` with its queue and dependencies (``EnqueueFlow``, ``CreateBatch``).

    ``depends_on``: ids of existing jobs; ``depends_on_new``: indexes of jobs of the same
    command (what ``"@N"`` names at the HTTP edge). ``run_on_failure``: when a dependency dies
    or is cancelled, release this job anyway (``on_dependency_failure: "run"``) instead of
    cancelling it with ``dependency_failed``.
    """

    queue: str
    job: NewJob
    depends_on: tuple[int, ...] = ()
    depends_on_new: tuple[int, ...] = ()
    run_on_failure: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchCallback:
    """A job enqueued once when a batch's condition is met (its claim carries the outcomes of
    the batch's jobs as ``parents``)."""

    queue: str
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueFlow:
    """Create jobs, possibly in several queues, that may depend on other jobs; all or none.

    Preconditions: 1..MAX_BATCH_JOBS jobs, each valid as in ``Enqueue``; every id in
    ``depends_on`` is a job that exists; every index in ``depends_on_new`` names another job of
    this command, and those references form no cycle; at most ``MAX_DEPENDENCIES`` per job.
    Effects: a job with no unfinished dependency is created as ``Enqueue`` creates it; one
    with some is ``waiting`` until each has finished. A dependency that already succeeded
    counts as done; one that already died or was cancelled applies the failure policy at once.
    Refusals: ``invalid`` (nothing is created), ``not_found`` (an unknown dependency id),
    ``too_many_queues``.
    """

    now_ms: int
    request_id: str | None = None
    jobs: tuple[FlowJob, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateBatch:
    """``EnqueueFlow`` whose jobs form a new batch with callbacks.

    Effects: the batch gets the next batch id; the callbacks' queues are created now. Each
    callback is enqueued exactly once, at the end of the command that makes it due:
    ``on_complete`` when every job of the batch is finished (succeeded, dead or cancelled),
    ``on_success`` when every job succeeded (a dead job requeued and then succeeding still
    counts), ``on_death`` at the first death (a lease that ran out of attempts included).
    Refusals: as ``EnqueueFlow``.
    """

    now_ms: int
    request_id: str | None = None
    jobs: tuple[FlowJob, ...]
    on_complete: BatchCallback | None = None
    on_success: BatchCallback | None = None
    on_death: BatchCallback | None = None


Command = (
    Enqueue
    | Claim
    | Heartbeat
    | Ack
    | Nack
    | Release
    | Cancel
    | RequeueDead
    | Purge
    | Pause
    | Resume
    | Configure
    | SetLimits
    | Tick
    | EnableVersion
    | PutSchedule
    | DeleteSchedule
    | Fire
    | TriggerSchedule
    | SetSchedulePaused
    | EnqueueFlow
    | CreateBatch
)
