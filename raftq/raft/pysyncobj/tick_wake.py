"""What wakes PySyncObj's tick thread, and the one commit nothing woke (issue 21).

PySyncObj's tick thread runs ``_onTick`` in a loop; each tick ends in ``poller.poll(timeout)``
with the timeout ``autoTickPeriod`` (10 ms here, ``PySyncObjEngine._syncobj_conf``). The next
tick starts as soon as the poller has an event, so a tick waits for the timeout only when
nothing it watches happens:
- a command queued on the loop thread (``Replica.apply``, ``SyncObj._applyCommand``): PySyncObj
  writes a byte to its own notify pipe, watched by the poller, for every queued command when
  ``appendEntriesUseBatch`` is off (raftq's setting): the leader picks an entry up at once
  (0.09 ms on an idle leader, docs/benchmark-log.md). Group commit queues one command per log
  entry, so that is one byte per batch;
- a message from a peer: its socket is in the poller (``TCPTransport``; the in-memory
  transport has its own pipe, ``raftq.raft.pysyncobj.memory_transport``). A follower handles an
  AppendEntries on the tick that the message's arrival woke, writes it and answers there; the
  leader counts the answer at the start of the tick its arrival woke.

Bug fixed (measured: 12 ms per write on an idle single-node cluster, 1 s with a 1 s poll
timeout): the leader counts its own copy towards the commit index only at the start of a tick
(``_onTick``), and appends new entries near its end (``_checkCommandsToApply``). With other
voters their answers wake the next tick; a node that is a majority alone (a single-node
cluster) waited for the poll timeout to commit every entry. ``wake_after_append`` writes a byte
to PySyncObj's notify pipe when this node appended entries that no answer will come for, so
the next tick starts at once and commits them: once per tick that appended, after the
leader's copy is durable (``RaftqSyncObj._checkCommandsToApply``).

Under load a queued entry still waits for the tick thread to finish the tick it is in (the
leader's durable write of the previous entry, applying, sending): that is busy time, not a
poll timeout, and no wake-up shortens it.

Relies on PySyncObj 0.3.17 private behaviour: ``SyncObj._SyncObj__pipeNotifier`` (made when
``appendEntriesUseBatch`` is off), ``_SyncObj__otherNodes`` and ``_SyncObj__getCurrentLogIndex``:
guarded by ``tests/raft/test_pysyncobj_private.py`` and, for what they do,
``tests/raft/test_tick_wake.py``.
"""

from __future__ import annotations

import contextlib
from typing import Any

__all__ = ["wake_after_append"]


def wake_after_append(so: Any, end_before: int) -> None:
    """Tick thread, after ``_checkCommandsToApply``: if the log grew past ``end_before`` and
    this node alone is a majority (no other voters), make the next poll return at once."""
    if so._SyncObj__otherNodes or so._SyncObj__getCurrentLogIndex() == end_before:
        return  # other voters' answers wake the tick that counts them; or nothing appended
    notifier = getattr(so, "_SyncObj__pipeNotifier", None)
    if notifier is None:  # appendEntriesUseBatch on (never in raftq): the timer ticks
        return
    with contextlib.suppress(BlockingIOError):  # a full pipe: a wake-up is pending anyway
        notifier.notify()
