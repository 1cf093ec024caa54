"""A fatal apply error ends the process whatever ``on_fatal`` does (raftq/raft/fail_stop.py).

Bug fixed: ``RaftNode``'s default ``on_fatal`` called ``os._exit(70)``, but the callback is
injectable (``RaftNode(on_fatal=...)``) and the node relied on it never returning. If it
returned, ``Replica.apply`` raised into PySyncObj, whose tick thread logged it and applied
the same entry again on the half-changed machine, every tick, with the node still voting and
answering. Now ``RaftNode`` calls the callback for reporting and then ends the process (exit
70); every fatal path (Replica.apply, SnapshotHooks.deserialize, the diverged-entry check)
gets that one callback, and a Replica never applies again after its machine failed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raftq.raft.pysyncobj.replica import Replica

REPO = Path(__file__).resolve().parents[2]

# A real one-node raftq node in a child process. Once armed, the machine fails in the middle
# of an entry (``apply_entry`` has already moved ``applied`` and the digest); ``on_fatal``
# prints and returns.
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from raftq.core import Tick
    from raftq.core.machine import Machine
    from raftq.raft.node import RaftNode
    from raftq.raft.pysyncobj import new_pysyncobj_engine
    from tests.embed.conftest import make_config

    armed = False
    real = Machine.apply_command

    def apply_command(self, cmd):
        if armed:
            print(f"apply: machine.applied={self.applied}", flush=True)
            raise RuntimeError("corrupt state (test)")
        return real(self, cmd)

    Machine.apply_command = apply_command

    def on_fatal(error):
        print(f"on_fatal: {error!r}", flush=True)  # and returns

    async def main():
        global armed
        config = make_config(Path(sys.argv[1]), 1)
        node = RaftNode(config, new_pysyncobj_engine(config, "n1"), on_fatal=on_fatal)
        await node.start()
        while not node.is_leader():
            await asyncio.sleep(0.05)
        await node.barrier()
        armed = True
        try:
            await node.submit(Tick(now_ms=node.now_ms()), timeout_ms=2000)
        except Exception as e:
            print(f"submit: {e!r}", flush=True)
        await asyncio.sleep(3)
        print("still running", flush=True)
        await node.stop()

    asyncio.run(main())
    """
)


@pytest.mark.integration
def test_bug_fixed_a_returning_on_fatal_still_ends_the_process(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    out = proc.stdout.splitlines()
    applies = [line for line in out if line.startswith("apply:")]
    assert len(applies) == 1, f"the failed entry was applied {len(applies)} times: {out[:8]}"
    assert [line for line in out if line.startswith("on_fatal:")] == [
        "on_fatal: RuntimeError('corrupt state (test)')"
    ]
    assert "still running" not in out
    assert proc.returncode == 70, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "raftq: stopping (exit 70): corrupt state (test)" in proc.stderr


def test_a_replica_never_applies_again_after_its_machine_failed() -> None:
    """In-process, with a callback that returns: the retried entry is refused, not applied
    on the half-changed machine."""
    fatal: list[BaseException] = []
    replica = Replica(lambda: None, fatal.append)
    applied: list[bytes] = []

    def broken(raw: bytes) -> None:
        applied.append(raw)
        replica.machine.applied += 1  # half-changed
        raise RuntimeError("corrupt state (test)")

    replica.machine.apply_entry = broken  # type: ignore[method-assign]
    for _ in range(3):  # PySyncObj's tick thread retries the entry every tick
        try:
            replica.apply.__wrapped__(replica, b"entry")
        except Exception as e:  # what PySyncObj's tick thread does
            assert isinstance(e, RuntimeError)
    assert applied == [b"entry"] and replica.machine.applied == 1
    assert len(fatal) == 1
