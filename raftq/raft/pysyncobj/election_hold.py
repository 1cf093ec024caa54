"""The election hold: PySyncObj has no pre-vote, so a follower whose tick thread was busy must
not start an election before it has read the leader's heartbeats waiting in its sockets.

Relies on PySyncObj 0.3.17 private behaviour: ``_SyncObj__raftState``,
``_SyncObj__generateRaftTimeout``, ``_SyncObj__raftElectionDeadline``,
``_SyncObj__raftLeader`` and ``_SyncObj__transferInProgress`` (guarded by
``tests/raft/test_snapshot_hooks.py``, which reads and writes them on a real ``SyncObj``, and
``tests/raft/test_pysyncobj_private.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from pysyncobj.monotonic import monotonic

__all__ = ["ElectionHold"]

logger = logging.getLogger(__name__)

_LEADER = 2  # PySyncObj's _RAFT_STATE.LEADER
_SLOW_TICK_MS = 50  # ticks at least this long are logged at debug level (benchmarks read them)


class ElectionHold:
    """Keeps a follower that was busy from starting an election before it has read its mail.

    PySyncObj has no pre-vote: a follower whose tick thread was busy longer than the election
    timeout (a snapshot load, a log replay at start, a large apply) finds its deadline expired
    and starts an election, though the leader's heartbeats are waiting unread in its sockets;
    the cluster's term goes up and a leader may be deposed. ``hold()`` restarts the election
    timer (as receiving a heartbeat would). Delaying a node's own candidacy is always safe in
    Raft (it costs liveness only, and only on this node). It is called after a snapshot is
    loaded, after every tick that lasted longer than ``stall_s``, during applies that run past
    ``stall_s`` since the last tick ended, and at the first tick after start.

    A node restarted on a data dir that has a log (``rejoin_s`` > 0) also holds its candidacy
    at every tick until it has heard of a leader, for at most ``rejoin_s`` after its start: its
    peers reconnect to it about a second after it comes back (``connectionRetryTime``), and
    without pre-vote a restarted follower whose timer ran out first raised everyone's term and
    deposed a healthy leader (measured: two extra elections per follower restarted under load
    in a rolling restart). A brand-new node (no log) and a whole cluster restarted at once
    start their elections at most ``rejoin_s`` later than they would.
    """

    def __init__(self, stall_s: float, rejoin_s: float = 0.0) -> None:
        self.syncobj: Any = None  # set once PySyncObj's constructor has returned
        self._stall_s = stall_s
        self._tick_end = monotonic()
        self._started = False
        self.holds = 0  # how many times the timer was restarted (for tests and metrics)
        self.max_gap_ms = 0  # longest time between two tick ends since start
        self.ticks = 0  # ticks ended so far (the snapshot sender's budget is per tick)
        self._receiving_until = 0.0  # monotonic time until which a snapshot is being received
        # monotonic time until which a restarted node waits to hear of a leader (see above)
        self._rejoin_until = monotonic() + rejoin_s

    def hold(self, syncobj: Any = None) -> None:
        so = syncobj if syncobj is not None else self.syncobj
        if so is None or getattr(so, "_SyncObj__raftState", None) == _LEADER:
            return
        if getattr(so, "_SyncObj__transferInProgress", False):
            # The leader sent TimeoutNow (a leadership transfer to this node, which has every
            # entry): PySyncObj set the election deadline to now. Restarting the timer here
            # (a slow tick under load) cancelled the handover: the leader saw nobody take over.
            return
        timeout = so._SyncObj__generateRaftTimeout()
        so._SyncObj__raftElectionDeadline = monotonic() + timeout
        self.holds += 1

    def _leader_known(self) -> bool:
        so = self.syncobj
        return so is not None and getattr(so, "_SyncObj__raftLeader", None) is not None

    def on_apply(self, syncobj: Any) -> None:
        """Tick thread, per applied entry: cheap unless this tick has run too long."""
        if monotonic() - self._tick_end > self._stall_s:
            self.hold(syncobj)

    def receiving(self, for_s: float) -> None:
        """A snapshot chunk arrived: hold elections for ``for_s`` more (tick thread).

        A follower receiving a snapshot is behind the leader sending it, so it cannot win an
        election; but without pre-vote its candidacy raises everyone's term and deposes that
        leader, which then starts the transfer again (measured: term 1 -> 97 while a wiped
        node received 130 MB on a loaded machine). The hold lapses ``for_s`` after the last
        chunk, so a leader that dies mid-transfer is replaced as usual.
        """
        self._receiving_until = monotonic() + for_s
        self.hold()

    def on_tick(self) -> None:
        """Tick thread, at the end of every tick (PySyncObj's on-tick callback)."""
        now = monotonic()
        if now < self._receiving_until or (now < self._rejoin_until and not self._leader_known()):
            self.hold()
        self.ticks += 1
        gap = now - self._tick_end
        if self._started:
            gap_ms = int(gap * 1000)
            self.max_gap_ms = max(self.max_gap_ms, gap_ms)
            if gap > self._stall_s:
                logger.info("tick thread busy for %d ms: election timer restarted", gap_ms)
            elif gap_ms >= _SLOW_TICK_MS:
                logger.debug("tick thread busy for %d ms", gap_ms)
        if not self._started or gap > self._stall_s:
            self._started = True
            self.hold()
        self._tick_end = now
