"""A node never applies a log entry of a version above its own (raftq/raft/pysyncobj/replica.py,
raftq/raft/fail_stop.py ``EXIT_VERSION_TOO_NEW``).

Bug fixed: an entry declaring a newer version was applied as ``Refusal(unsupported_version)``:
the entry counted as applied and moved the digest, while upgraded nodes applied its commands,
so in a cluster rolling to a new version the replicas diverged silently. Now the node stops
(exit 76, one line naming the versions) with its machine untouched, and applies the entry once
it runs the newer raftq.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import msgpack
import pytest

from raftq.core import Machine, Tick, encode_entry
from raftq.core.codec import FORMAT_VERSION, LOG_VERSION, entry_version
from raftq.errors import NewerVersionError
from raftq.raft.pysyncobj.replica import Replica

REPO = Path(__file__).resolve().parents[2]

# A tick as a newer raftq would write it: same command, the entry declares the next version.
_NEWER = msgpack.packb([LOG_VERSION + 1, [[12, None, 5]]])


def test_entry_version_reads_the_declared_version() -> None:
    assert entry_version(encode_entry([Tick(now_ms=5)])) == FORMAT_VERSION == 1
    assert entry_version(_NEWER) == LOG_VERSION + 1
    assert entry_version(msgpack.packb([300, []])) == 300  # not a fixint: the slow path
    assert entry_version(b"\xc1") is None  # not msgpack
    assert entry_version(msgpack.packb({"a": 1})) is None


def test_bug_fixed_an_entry_of_a_newer_version_stops_the_replica_unapplied() -> None:
    fatal: list[BaseException] = []
    replica = Replica(lambda: None, fatal.append)
    replica.apply.__wrapped__(replica, encode_entry([Tick(now_ms=1)]))
    before = (replica.machine.applied, replica.machine.digest, replica.machine.clock_ms)

    with pytest.raises(NewerVersionError, match=f"needs log version {LOG_VERSION + 1}"):
        replica.apply.__wrapped__(replica, _NEWER)

    m: Machine = replica.machine
    assert (m.applied, m.digest, m.clock_ms) == before  # nothing of it applied
    assert len(fatal) == 1 and isinstance(fatal[0], NewerVersionError)
    with pytest.raises(RuntimeError, match="failed earlier"):  # and nothing after it
        replica.apply.__wrapped__(replica, encode_entry([Tick(now_ms=9)]))


# A real one-node raftq node in a child process proposes an entry of the next version.
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    import msgpack
    from raftq.core.codec import LOG_VERSION
    from raftq.raft.node import RaftNode
    from raftq.raft.pysyncobj import new_pysyncobj_engine
    from tests.embed.conftest import make_config

    async def main():
        config = make_config(Path(sys.argv[1]), 1)
        node = RaftNode(config, new_pysyncobj_engine(config, "n1"))
        await node.start()
        while not node.is_leader():
            await asyncio.sleep(0.05)
        await node.barrier()
        node.engine.propose(msgpack.packb([LOG_VERSION + 1, [[12, None, 5]]]), print)
        await asyncio.sleep(5)
        print("still running", flush=True)
        await node.stop()

    asyncio.run(main())
    """
)


@pytest.mark.integration
def test_a_node_meeting_a_newer_entry_exits_76_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert "still running" not in proc.stdout
    assert proc.returncode == 76, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    # The barrier and the leader's own ticks were applied before it: their count varies.
    line = r"raftq: stopping \(exit 76\): the log entry after the \d+ applied needs log version"
    assert re.search(f"{line} {LOG_VERSION + 1}, this node runs raftq", proc.stderr), proc.stderr
