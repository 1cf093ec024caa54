"""Scenario commands and output lines of dependencies and batches (``scenarios.py`` uses them).

- ``enable now=0 version=3``: ``EnableVersion`` (flows need log version 3).
- ``flow now=0 queue=q jobs=a,b,c<@0+@1``: ``EnqueueFlow``, one job per comma-separated item,
  all in ``queue``. An item is a payload, then optionally ``<`` and its dependencies joined by
  ``+`` (``@N``: the N-th job of this command; a number: an existing job id), then optionally
  ``!`` (``on_dependency_failure: run``). ``max_attempts=`` applies to every job.
- ``batch now=0 queue=q jobs=a,b on_complete=cb:done on_success=cb:ok on_death=cb:dead``:
  ``CreateBatch`` (jobs as in ``flow``; a callback is ``queue:payload``).

State lines: ``flow <id> on=<deps> outcomes=<id:state,...> policy=<cancel|run> batch=<id|->``
for each job with dependencies (or a callback), and ``batch <id> jobs=<ids> <state>=<n>...
fired=<callbacks>`` for each batch kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from raftq.core import (
    BatchCallback,
    Command,
    CreateBatch,
    EnableVersion,
    EnqueueFlow,
    FlowJob,
    Machine,
    NewJob,
)

__all__ = ["FLOW_COMMANDS", "flow_lines"]


def _jobs(a: Any) -> tuple[FlowJob, ...]:
    queue, max_attempts = a.text("queue"), a.opt_int("max_attempts")
    out = []
    for item in a.text("jobs").split(","):
        run = item.endswith("!")
        payload, _, deps = item.rstrip("!").partition("<")
        refs = [d for d in deps.split("+") if d]
        out.append(
            FlowJob(
                queue=queue,
                job=NewJob(payload=payload.encode(), max_attempts=max_attempts),
                depends_on=tuple(int(d) for d in refs if not d.startswith("@")),
                depends_on_new=tuple(int(d[1:]) for d in refs if d.startswith("@")),
                run_on_failure=run,
            )
        )
    return tuple(out)


def _callback(a: Any, key: str) -> BatchCallback | None:
    spec = a.opt_text(key)
    if spec is None:
        return None
    queue, _, payload = spec.partition(":")
    return BatchCallback(queue=queue, payload=payload.encode())


def _enable(a: Any) -> Command:
    return EnableVersion(
        now_ms=a.int("now"), request_id=a.opt_text("rid"), version=a.int("version")
    )


def _flow(a: Any) -> Command:
    return EnqueueFlow(now_ms=a.int("now"), request_id=a.opt_text("rid"), jobs=_jobs(a))


def _batch(a: Any) -> Command:
    return CreateBatch(
        now_ms=a.int("now"),
        request_id=a.opt_text("rid"),
        jobs=_jobs(a),
        on_complete=_callback(a, "on_complete"),
        on_success=_callback(a, "on_success"),
        on_death=_callback(a, "on_death"),
    )


FLOW_COMMANDS: dict[str, Callable[[Any], Command]] = {
    "enable": _enable,
    "flow": _flow,
    "batch": _batch,
}


def flow_lines(m: Machine) -> Iterator[str]:
    for job_id in sorted(m.jobs):
        flow = m.job_flow(job_id)
        if flow is None or (not flow.depends_on and not flow.outcomes):
            continue
        on = ",".join(map(str, flow.depends_on)) or "-"
        outcomes = ",".join(f"{pid}:{state}" for pid, state, _ in flow.outcomes) or "-"
        batch = "-" if flow.batch is None else flow.batch
        yield (
            f"flow {job_id} on={on} outcomes={outcomes} "
            f"policy={flow.on_dependency_failure} batch={batch}"
        )
    for batch_id in sorted(m.flow.batches):
        info = m.batch_info(batch_id)
        assert info is not None
        counts = " ".join(f"{state}={n}" for state, n in info.counts.items() if n)
        fired = ",".join(info.fired) or "-"
        ids = ",".join(map(str, info.jobs))
        yield f"batch {info.id} jobs={ids} {counts} fired={fired}"
