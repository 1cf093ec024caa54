"""The sequential model of raftq queues that the linearizability search steps through.

It follows ``raftq/core`` (DESIGN.md section 2), with what the history cannot see made
nondeterministic, so the model allows every behaviour the machine can show (it may allow a few
more; it never forbids a legal one):

- Priority is strict: a claim takes a job of the highest priority that is ready.
- FIFO: jobs enqueued ready (no delay) and never leased ("fresh") are ordered by their
  enqueue's linearization (the machine orders them by (ready_at_ms, id), both increasing in log
  order). A job that is ready again (lease expired, nack with retry_in_ms 0) keeps a ready time
  that the history cannot see, so it may be taken before or after any fresh job of its priority.
- Delayed jobs (enqueued with a delay, or nacked with a backoff) become due at a cluster time
  the history cannot see: a claim may take one (if no ready job outranks it) or pass it by.
- Lease expiry is cluster time too: a leased job may have expired at any moment. It is decided
  lazily, when it is needed: a claim takes the leased job again (an expired lease with attempts
  left), or an ack/nack/heartbeat with the lease's token is refused (that refusal *is* the
  expiry, so the job is ready again, or dead when out of attempts). A claim may always pass a
  leased job by (its lease may not have expired).
- Attempts: a claim returns attempt = the job's claims so far + 1; tokens strictly increase in
  linearization order (a cluster-wide counter, so also within one component), and a job's
  token is the latest claim's. A claim with an unknown outcome leases jobs under a token nobody
  holds.
- An ok ack needs the job leased with that token (then succeeded). An ok nack likewise (then
  dead when out of attempts, ready when ``retry_in_ms`` is 0, else delayed). An ok release
  likewise (then ready, with the claim's attempt given back: the next delivery shows the same
  attempt number again). An ok heartbeat needs the lease and changes nothing here (lease
  lengths are not modelled).
- Refusals (``fail`` with a state-machine error) are legal when the token is not the job's live
  lease; on the live lease they mean it expired.
- Enqueue of an id that already exists is the idempotency key's dedup: no change.
Not modelled: pause/resume/cancel/purge/dead requeue (not in the workload), lease lengths and
the clock, retention and dedup windows. Initial state: empty (a fresh cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEAD",
    "DELAYED",
    "DONE",
    "LEASED",
    "PHANTOM",
    "READY",
    "Action",
    "JobSpec",
    "State",
    "StateBoundError",
    "initial",
    "step",
]

READY, DELAYED, LEASED, DONE, DEAD = "R", "D", "L", "X", "Z"
PHANTOM = -1  # the token of a lease granted by a claim whose outcome is unknown

# A concrete state: (fresh ids in FIFO order, sorted ((id, status, token, attempts), ...),
# last token observed).
JobRow = tuple[int, str, int, int]
State = tuple[tuple[int, ...], tuple[JobRow, ...], int]


class StateBoundError(Exception):
    """An uncertain claim has more possible outcomes than the search bound allows."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    id: int
    queue: str
    priority: int
    max_attempts: int
    delayed: bool  # enqueued with a delay: not ready until a cluster time we cannot see
    # The attempt numbers its ok deliveries showed, ascending. Between two of them, exactly
    # the missing numbers were claims with an unknown outcome; after the last, any number.
    seen_attempts: tuple[int, ...] = ()
    # A release of the job was applied or may have been: attempts went down, so the numbers
    # seen bound nothing.
    released: bool = False

    def phantom_room(self, attempts: int) -> bool:
        """Whether an uncertain claim may be this job's next claim, after ``attempts``."""
        if self.released:
            return True
        for seen in self.seen_attempts:
            if seen > attempts:
                return seen > attempts + 1
        return True


@dataclass(frozen=True, slots=True)
class Action:
    """One operation as the model sees it.

    kind: enqueue | claim | ack | nack | release | heartbeat. outcome: ok | info | refused.
    For claims: ``queues``, ``max`` and, when ok, ``got`` = ((id, attempt, token), ...) and
    ``exhaustive``. A claim over several queues is stepped as one claim per queue (see
    linear.py), each taking that queue's jobs in order, each its queue's best.
    For ack/nack/release/heartbeat: ``job`` and ``token``; nack's ``retry_zero``.
    """

    kind: str
    outcome: str
    job: int = 0
    token: int = 0
    queues: frozenset[str] = frozenset()
    max: int = 1
    got: tuple[tuple[int, int, int], ...] = ()
    exhaustive: bool = False  # an ok claim that returned fewer jobs than its max (in all)
    # One queue's part of a claim that named several: an uncertain one may have stopped
    # taking from this queue at any count, the rest of its max going to the other queues.
    split: bool = False
    retry_zero: bool = False


def initial() -> State:
    return ((), (), 0)


def step(state: State, a: Action, specs: dict[int, JobSpec], max_branch: int) -> list[State]:
    """Every state ``a`` can lead to from ``state`` with its recorded outcome (empty: illegal)."""
    fresh, rows, last = state
    jobs = {r[0]: r for r in rows}
    if a.kind == "enqueue":
        if a.job in jobs or a.job in fresh:
            return [state]  # dedup by key, or already added
        spec = specs[a.job]
        if spec.delayed:
            jobs[a.job] = (a.job, DELAYED, 0, 0)
            added: State = (fresh, _rows(jobs), last)
        else:
            added = ((*fresh, a.job), rows, last)
        return [added]
    if a.kind == "claim":
        if a.outcome == "ok":
            nxt = _claim_ok(fresh, jobs, last, a, specs)
            return [] if nxt is None else [nxt]
        found: set[State] = set()
        _claim_any(
            fresh, jobs, last, a, specs=specs, room=a.max, found=found, max_branch=max_branch
        )
        # Sorted, so the search is the same in every process (str hashing is salted); those
        # that leased the most jobs first (measured faster on simulated histories).
        return sorted(found, key=lambda s: (-_phantoms(s), s))
    row = jobs.get(a.job)
    live = row is not None and row[1] == LEASED and row[2] == a.token and a.token != PHANTOM
    if a.outcome == "refused":
        if not live:
            return [state]
        assert row is not None
        return [(fresh, _rows(_expire(jobs, row, specs)), last)]
    if not live:
        return []  # ok: illegal; info: it cannot have had an effect now
    assert row is not None
    if a.kind == "heartbeat":
        return [state]
    jid, _, token, attempts = row
    if a.kind == "ack":
        jobs[jid] = (jid, DONE, token, attempts)
    elif a.kind == "release":
        jobs[jid] = (jid, READY, token, attempts - 1)
    elif attempts >= specs[jid].max_attempts:
        jobs[jid] = (jid, DEAD, token, attempts)
    else:
        jobs[jid] = (jid, READY if a.retry_zero else DELAYED, token, attempts)
    return [(fresh, _rows(jobs), last)]


ORDER = 1


def _phantoms(state: State) -> int:
    return sum(r[2] == PHANTOM for r in state[1])


def _rows(jobs: dict[int, JobRow]) -> tuple[JobRow, ...]:
    return tuple(sorted(jobs.values()))


def _expire(jobs: dict[int, JobRow], row: JobRow, specs: dict[int, JobSpec]) -> dict[int, JobRow]:
    jid, _, token, attempts = row
    status = DEAD if attempts >= specs[jid].max_attempts else READY
    jobs[jid] = (jid, status, token, attempts)
    return jobs


def _top_ready(
    fresh: tuple[int, ...], jobs: dict[int, JobRow], a: Action, specs: dict[int, JobSpec]
) -> int:
    """Highest priority among the jobs certainly ready in the claim's queues (-1: none)."""
    top = -1
    for jid in fresh:
        s = specs[jid]
        if s.queue in a.queues and s.priority > top:
            top = s.priority
    for jid, status, _, _ in jobs.values():
        s = specs[jid]
        if status == READY and s.queue in a.queues and s.priority > top:
            top = s.priority
    return top


def _may_take(
    jid: int,
    fresh: tuple[int, ...],
    jobs: dict[int, JobRow],
    *,
    top: int,
    a: Action,
    specs: dict[int, JobSpec],
) -> bool:
    """Whether a claim may take ``jid`` next (given ``top`` = _top_ready)."""
    s = specs[jid]
    if s.priority < top or s.queue not in a.queues:
        return False
    if jid in fresh:
        # The FIFO head of its priority among the fresh jobs of the claim's queues.
        for other in fresh:
            o = specs[other]
            if o.priority == s.priority and o.queue in a.queues:
                return other == jid
        return False
    row = jobs.get(jid)
    if row is None:
        return False
    status = row[1]
    if status in (READY, DELAYED):
        return True
    return status == LEASED and row[3] < s.max_attempts  # an expired lease with attempts left


def _claim_ok(
    fresh: tuple[int, ...],
    jobs: dict[int, JobRow],
    last: int,
    a: Action,
    specs: dict[int, JobSpec],
) -> State | None:
    if len(a.got) > a.max:
        return None
    for jid, attempt, token in a.got:
        s = specs.get(jid)
        if s is None or s.queue not in a.queues or token <= last:
            return None
        top = _top_ready(fresh, jobs, a, specs)
        if not _may_take(jid, fresh, jobs, top=top, a=a, specs=specs):
            return None
        row = jobs.get(jid)
        attempts = 0 if row is None else row[3]
        if attempt != attempts + 1 or (row is not None and token <= row[2]):
            return None
        if row is None:
            fresh = tuple(x for x in fresh if x != jid)
        jobs[jid] = (jid, LEASED, token, attempt)
        last = token
    if a.exhaustive and _top_ready(fresh, jobs, a, specs) >= 0:
        return None  # a ready job was left behind by a claim that had room for it
    return (fresh, _rows(jobs), last)


def _claim_any(
    fresh: tuple[int, ...],
    jobs: dict[int, JobRow],
    last: int,
    a: Action,
    *,
    specs: dict[int, JobSpec],
    room: int,
    found: set[State],
    max_branch: int,
) -> None:
    """Add to ``found`` every state an uncertain claim may leave (it takes 1..room jobs)."""
    # Depth-first over the jobs it takes, one at a time; different orders of the same picks
    # reach the same state, which is expanded once.
    todo: list[tuple[tuple[int, ...], dict[int, JobRow], int]] = [(fresh, jobs, room)]
    expanded: set[tuple[tuple[int, ...], tuple[JobRow, ...]]] = set()
    while todo:
        cur_fresh, cur_jobs, left = todo.pop()
        top = _top_ready(cur_fresh, cur_jobs, a, specs)
        candidates = [j for j in cur_fresh if specs[j].queue in a.queues]
        candidates += [
            j
            for j, r in cur_jobs.items()
            if r[1] in (READY, DELAYED, LEASED) and specs[j].queue in a.queues
        ]
        for jid in candidates:
            if not _may_take(jid, cur_fresh, cur_jobs, top=top, a=a, specs=specs):
                continue
            row = cur_jobs.get(jid)
            attempts = 0 if row is None else row[3]
            if not specs[jid].phantom_room(attempts):
                continue  # its next ok delivery says no claim came in between
            nfresh = tuple(x for x in cur_fresh if x != jid) if row is None else cur_fresh
            njobs = dict(cur_jobs)
            njobs[jid] = (jid, LEASED, PHANTOM, attempts + 1)
            rows = _rows(njobs)
            if (nfresh, rows) in expanded:
                continue
            expanded.add((nfresh, rows))
            # It may stop here only if it is full or nothing certainly ready is left, or if
            # its other queues took the rest of its max (a split part: linear.py).
            if left == 1 or a.split or _top_ready(nfresh, njobs, a, specs) < 0:
                found.add((nfresh, rows, last))
                if len(found) > max_branch:
                    raise StateBoundError
            if left > 1:
                todo.append((nfresh, njobs, left - 1))
