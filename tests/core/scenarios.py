"""Data-driven core scenarios: the script format, its commands and how results are printed.

A script (``tests/core/testdata/*.txt``) is a list of cases. A case is one command line, a
line ``----``, and the expected output up to the next blank line::

    # comments and blank lines between cases are kept as they are
    enqueue now=1000 queue=q payload=a priority=5
    ----
    enqueued 1
    job 1 q queued p5 ready=1000 attempts=0/5

A command line is a name and ``key=value`` arguments (no spaces inside a value; a list is
comma-separated). ``now`` is the proposer's clock in ms: the machine is driven with explicit
times only, as raftq.core is pure. The output is the command's result on the first lines, then
the state every case shows: one line per queue that is paused or holds keys, and one line per
job still in the machine, in id order. ``state`` prints the state alone; ``reset`` starts
again from an empty machine (and prints nothing), so that a script's parts stay short.

The runner (``test_scenarios.py``) replays every case on one ``Machine`` per script and
compares the output; ``RAFTQ_REWRITE=1`` writes the actual outputs back into the scripts
instead (review the diff before committing it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from raftq.core import (
    Ack,
    Acked,
    BatchCreated,
    Cancel,
    Cancelled,
    Claim,
    Claimed,
    Command,
    Configure,
    Configured,
    DeleteSchedule,
    EnableVersion,
    Enqueue,
    Enqueued,
    Extended,
    Fire,
    Fired,
    Heartbeat,
    JobState,
    Lease,
    Machine,
    Nack,
    Nacked,
    NewJob,
    Pause,
    Paused,
    Purge,
    Purged,
    PutSchedule,
    Refusal,
    Requeued,
    RequeueDead,
    Result,
    Resume,
    Resumed,
    ScheduleDeleted,
    SchedulePaused,
    SchedulePut,
    SetSchedulePaused,
    Tick,
    Ticked,
    TriggerSchedule,
    VersionEnabled,
)
from tests.core.scenarios_flow import FLOW_COMMANDS, flow_lines

__all__ = ["Case", "ScriptError", "Session", "parse", "render"]

SEPARATOR = "----"


class ScriptError(ValueError):
    """A script that cannot be read: the message names the file line and the cause."""


@dataclass
class Case:
    """One command and what it printed (``expected``) as found in the script."""

    line: int  # 1-based line of the command in its file
    command: str
    expected: list[str]


def parse(text: str, name: str) -> tuple[list[str | Case], list[Case]]:
    """The script as a sequence of verbatim lines and cases (for rewriting), and its cases."""
    items: list[str | Case] = []
    cases: list[Case] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            items.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ScriptError(f"{name}:{i + 1}: a command line must be followed by '----'")
        case = Case(line=i + 1, command=line, expected=[])
        i += 2
        while i < len(lines) and lines[i].strip():
            case.expected.append(lines[i])
            i += 1
        items.append(case)
        cases.append(case)
    return items, cases


def render(items: list[str | Case], outputs: dict[int, list[str]]) -> str:
    """The script text with each case's output replaced by ``outputs[case.line]``."""
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        else:
            out += [item.command, SEPARATOR, *outputs[item.line]]
    return "\n".join(out) + "\n"


# -- commands -------------------------------------------------------------------------------


class _Args:
    """The ``key=value`` arguments of one command; every one must be used exactly once."""

    def __init__(self, words: list[str]) -> None:
        self.values: dict[str, str] = {}
        for word in words:
            key, eq, value = word.partition("=")
            if not eq or not key or key in self.values:
                raise ScriptError(f"bad argument {word!r}: expected key=value, each key once")
            self.values[key] = value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.values.pop(key, default)
        if value is None:
            raise ScriptError(f"missing argument {key}=")
        return value

    def opt_text(self, key: str) -> str | None:
        return self.values.pop(key, None)

    def int(self, key: str) -> int:
        return _to_int(key, self.text(key))

    def opt_int(self, key: str) -> int | None:
        value = self.opt_text(key)
        return None if value is None else _to_int(key, value)

    def ints(self, key: str) -> tuple[int, ...] | None:
        value = self.opt_text(key)
        return None if value is None else tuple(_to_int(key, v) for v in value.split(","))

    def done(self) -> None:
        if self.values:
            raise ScriptError(f"unknown argument(s): {', '.join(sorted(self.values))}")


def _to_int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ScriptError(f"{key}= must be an integer, got {value!r}") from None


def _enqueue(a: _Args) -> Command:
    """``payload=a,b`` makes one job per payload, all with the same options."""
    priority, delay_ms, run_at_ms = (
        a.opt_int("priority") or 0,
        a.opt_int("delay"),
        a.opt_int("run_at"),
    )
    key, max_attempts, lease_ms = a.opt_text("key"), a.opt_int("max_attempts"), a.opt_int("lease")
    jobs = tuple(
        NewJob(
            payload=p.encode(),
            priority=priority,
            delay_ms=delay_ms,
            run_at_ms=run_at_ms,
            key=key,
            max_attempts=max_attempts,
            lease_ms=lease_ms,
        )
        for p in a.text("payload").split(",")
    )
    return Enqueue(
        now_ms=a.int("now"), request_id=a.opt_text("rid"), queue=a.text("queue"), jobs=jobs
    )


def _claim(a: _Args) -> Command:
    return Claim(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        queues=tuple(a.text("queues").split(",")),
        worker=a.text("worker", "w1"),
        max=a.opt_int("max") or 1,
        lease_ms=a.opt_int("lease"),
    )


def _heartbeat(a: _Args) -> Command:
    return Heartbeat(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        job_id=a.int("job"),
        token=a.int("token"),
        lease_ms=a.opt_int("lease"),
    )


def _ack(a: _Args) -> Command:
    result = a.opt_text("result")
    return Ack(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        job_id=a.int("job"),
        token=a.int("token"),
        result=None if result is None else result.encode(),
    )


def _nack(a: _Args) -> Command:
    return Nack(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        job_id=a.int("job"),
        token=a.int("token"),
        error=a.opt_text("error"),
        retry_in_ms=a.opt_int("retry_in"),
    )


def _cancel(a: _Args) -> Command:
    return Cancel(now_ms=a.int("now"), request_id=a.opt_text("rid"), job_id=a.int("job"))


def _requeue_dead(a: _Args) -> Command:
    return RequeueDead(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        queue=a.text("queue"),
        job_ids=a.ints("jobs"),
    )


def _purge(a: _Args) -> Command:
    return Purge(now_ms=a.int("now"), request_id=a.opt_text("rid"), queue=a.text("queue"))


def _pause(a: _Args) -> Command:
    return Pause(now_ms=a.int("now"), request_id=a.opt_text("rid"), queue=a.text("queue"))


def _resume(a: _Args) -> Command:
    return Resume(now_ms=a.int("now"), request_id=a.opt_text("rid"), queue=a.text("queue"))


def _configure(a: _Args) -> Command:
    return Configure(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        queue=a.text("queue"),
        dedup_window_ms=a.opt_int("dedup_window"),
        retention_ms=a.opt_int("retention"),
    )


def _tick(a: _Args) -> Command:
    return Tick(now_ms=a.int("now"), request_id=a.opt_text("rid"))


def _enable_version(a: _Args) -> Command:
    return EnableVersion(now_ms=a.int("now"), request_id=a.opt_text("rid"), version=a.int("v"))


def _put_schedule(a: _Args) -> Command:
    """``every=MS`` or ``cron=EXPR`` (underscores for spaces: ``cron=0_3_*_*_*``)."""
    cron = a.opt_text("cron")
    return PutSchedule(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        name=a.text("name"),
        queue=a.text("queue"),
        every_ms=a.opt_int("every"),
        cron=None if cron is None else cron.replace("_", " "),
        tz=a.opt_text("tz"),
        payload=a.text("payload", "").encode(),
        priority=a.opt_int("priority") or 0,
        overlap=a.text("overlap", "allow"),
        catchup_ms=a.opt_int("catchup") or 0,
        paused=a.text("paused", "no") == "yes",
    )


def _fire(a: _Args) -> Command:
    now, rid, name = a.int("now"), a.opt_text("rid"), a.text("name")
    return Fire(now_ms=now, request_id=rid, name=name, slot_ms=a.int("slot"))


def _schedule_command(kind: type[DeleteSchedule | TriggerSchedule]) -> Callable[[_Args], Command]:
    def build(a: _Args) -> Command:
        return kind(now_ms=a.int("now"), request_id=a.opt_text("rid"), name=a.text("name"))

    return build


def _schedule_paused(paused: bool) -> Callable[[_Args], Command]:
    def build(a: _Args) -> Command:
        return SetSchedulePaused(
            now_ms=a.int("now"), request_id=a.opt_text("rid"), name=a.text("name"), paused=paused
        )

    return build


COMMANDS: dict[str, Callable[[_Args], Command]] = {
    "enqueue": _enqueue,
    "claim": _claim,
    "heartbeat": _heartbeat,
    "ack": _ack,
    "nack": _nack,
    "cancel": _cancel,
    "requeue-dead": _requeue_dead,
    "purge": _purge,
    "pause": _pause,
    "resume": _resume,
    "configure": _configure,
    "tick": _tick,
    "enable-version": _enable_version,
    "put-schedule": _put_schedule,
    "fire": _fire,
    "trigger": _schedule_command(TriggerSchedule),
    "delete-schedule": _schedule_command(DeleteSchedule),
    "pause-schedule": _schedule_paused(True),
    "resume-schedule": _schedule_paused(False),
    **FLOW_COMMANDS,  # dependencies and batches (scenarios_flow.py)
}


class Session:
    """The machine a script drives; ``reset`` replaces it with a fresh one."""

    def __init__(self) -> None:
        self.m = Machine()

    def run(self, case: Case) -> list[str]:
        """Apply ``case``'s command; its result lines, then the state lines."""
        name, *words = case.command.split()
        if name in ("state", "reset") and words:
            raise ScriptError(f"{name} takes no arguments")
        if name == "reset":
            self.m = Machine()
            return []
        if name == "state":
            return list(state_lines(self.m))
        return run_command(self.m, name, words)


def run_command(m: Machine, name: str, words: list[str]) -> list[str]:
    build = COMMANDS.get(name)
    if build is None:
        known = ", ".join(["state", "reset", *COMMANDS])
        raise ScriptError(f"unknown command {name!r} (known: {known})")
    args = _Args(words)
    cmd = build(args)
    args.done()
    return [*result_lines(m.apply_command(cmd)), *state_lines(m)]


# -- output ---------------------------------------------------------------------------------


def result_lines(result: Result) -> list[str]:
    if isinstance(result, Claimed):
        if not result.jobs:
            return ["claimed nothing"]
        return [
            f"claimed job {j.id} {j.queue} p{j.priority} attempt={j.attempt} "
            f"token={j.token} expires={j.lease_expires_ms} payload={j.payload.decode()}"
            + _parents(j)
            for j in result.jobs
        ]
    return [_ONE_LINE[type(result)](result)]  # type: ignore[arg-type]


def _parents(j: Lease) -> str:
    if j.parents is None:
        return ""
    shown = [f"{pid}:{st}:{'-' if r is None else r.decode()}" for pid, st, r in j.parents]
    return " parents=" + ",".join(shown)


def _enqueued(r: Enqueued) -> str:
    marks = zip(r.ids, r.existing, strict=True)
    return "enqueued " + " ".join(f"{i}(existing)" if e else str(i) for i, e in marks)


def _nacked(r: Nacked) -> str:
    return f"nacked {r.job_id}: {r.state}" + ("" if r.run_at_ms is None else f" @{r.run_at_ms}")


# How each result but a claim prints.
_ONE_LINE: dict[type, Callable[..., str]] = {
    Refusal: lambda r: f"rejected {r.reason}: {r.message}",
    Enqueued: _enqueued,
    Extended: lambda r: f"extended expires={r.lease_expires_ms}",
    Acked: lambda r: f"acked {r.job_id}",
    Nacked: _nacked,
    Cancelled: lambda r: f"cancelled {r.job_id}",
    Requeued: lambda r: f"requeued {r.count}",
    Purged: lambda r: f"purged {r.count}",
    Paused: lambda r: f"paused {r.queue}",
    Resumed: lambda r: f"resumed {r.queue}",
    Configured: lambda r: (
        f"configured {r.queue} dedup_window={r.dedup_window_ms} retention={r.retention_ms}"
    ),
    Ticked: lambda r: f"ticked clock={r.clock_ms}",
    VersionEnabled: lambda r: f"version enabled {r.version}",
    SchedulePut: lambda r: f"schedule {r.name} " + ("created" if r.created else "replaced"),
    ScheduleDeleted: lambda r: f"schedule {r.name} deleted",
    Fired: lambda r: (
        f"fired {r.name}@{r.fire_ms}: " + (f"job {r.job_id}" if r.job_id else "skipped")
    ),
    SchedulePaused: lambda r: f"schedule {r.name} " + ("paused" if r.paused else "resumed"),
    BatchCreated: lambda r: f"batch {r.batch} created: jobs " + " ".join(map(str, r.ids)),
}


def state_lines(m: Machine) -> Iterator[str]:
    """The compact state dump: queues worth a line, then every job in id order."""
    for name in sorted(m.queue_names()):
        stats = m.queue_stats(name)
        assert stats is not None
        if stats.paused or stats.keys:
            yield (
                f"queue {name}"
                + (" paused" if stats.paused else "")
                + (f" keys={stats.keys}" if stats.keys else "")
            )
    for name in m.schedule_names():
        sc = m.schedule_info(name)
        assert sc is not None
        when = f"every={sc.every_ms}" if sc.every_ms is not None else f"cron={sc.cron!r}"
        yield (
            f"schedule {name} {sc.queue} {when} {sc.overlap} last_slot={sc.last_slot_ms} "
            f"fires={sc.fires} skipped={sc.skipped}" + (" paused" if sc.paused else "")
        )
    for job_id in sorted(m.jobs):
        info = m.job_info(job_id)
        assert info is not None
        words = [f"job {info.id} {info.queue} {info.state} p{info.priority}"]
        if info.state in (JobState.QUEUED, JobState.DELAYED):
            words.append(f"ready={info.run_at_ms}")
        words.append(f"attempts={info.attempts}/{info.max_attempts}")
        if info.state is JobState.LEASED:
            words.append(f"token={info.token} expires={info.lease_expires_ms} by={info.worker}")
        if info.finished_ms is not None:
            words.append(f"finished={info.finished_ms}")
        if info.key is not None:
            words.append(f"key={info.key}")
        if info.error is not None:
            words.append(f"error={info.error!r}")
        if info.schedule is not None:
            words.append(f"fire={info.fire_ms} of {info.schedule}")
        yield " ".join(words)
    yield from flow_lines(m)
