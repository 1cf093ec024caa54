"""Cluster time as this node stamps it: real elapsed time, bounded steps, majority jumps.

The state machine's clock is the largest ``now_ms`` it has applied (``raftq.core.machine``),
and only the leader stamps commands. Stamping the leader's raw wall clock let one skewed node
move cluster time for good: six hours ahead ended every lease at once and then froze cluster
time for every correct leader after it (their smaller ``now_ms`` is ignored by ``max``); six
hours behind froze it while that node led. ``ClusterClock`` is what a node stamps instead.

Every node keeps an estimate of cluster time, ``est = anchor + (monotonic time since the
anchor)``, re-anchored whenever the applied clock is ahead of it (``observe``, every tick loop
on every node, so a follower that becomes leader continues where the cluster was). ``stamp``
returns, with ``W`` this node's wall clock and ``step`` = ``raft.clock_max_step_ms``:

- ``W`` when ``est <= W <= est + step`` (the normal case, clocks kept by NTP), re-anchored at
  ``W``;
- ``est`` otherwise: a clock behind cluster time, or far ahead of it, is not followed; cluster
  time goes on at the rate of real elapsed time (never frozen, never a jump).

A jump of more than ``step`` forward happens only when a majority's clocks agree (``offer``):
the leader asks the other nodes for their wall clocks (``wants_probe``: when ``W > est +
step``, or while its estimate is not confirmed) and takes ``Q`` = the (f+1)-th largest of the
answers of a majority including itself (``majority_time``; f = (n-1)//2). At most f clocks
being wrong, one of the f+1 values at or above ``Q`` is a correct clock, so wrong clocks cannot
raise ``Q`` above every correct one. ``Q > est + step`` moves the estimate to ``Q``: how a
cluster restarted after hours of downtime catches up with real time.

After a start, a node's estimate is "not confirmed": it comes from the state on disk, which
may be hours old. It is confirmed by an applied clock within ``step`` of its own wall clock
(the cluster is live and agrees with this node), by a majority answer, or, when no majority
answers within ``settle_grace_ms``, by that grace (then cluster time goes on from the state on
disk, or on a brand-new cluster starts from this node's clock; logged: the nodes cannot reach
each other's APIs, and refusing writes for good would be worse). A leader refuses to stamp
(``NoLeader``: a definite refusal, nothing proposed) while not confirmed: a brand-new cluster
has no time at all (clock 0 would stamp 1970, and delayed jobs are relative to ``now_ms``),
and a lease granted at a stale time would be ended by the catch-up jump right after. A
brand-new cluster's time is taken from every node's clock while all of them answer within the
grace (their median: of two clocks, one hours behind cannot be told from the right one).

``voters`` is the number of nodes that answer the question; 1 (a single-node cluster, or a
node with no way to ask the others) makes this node's own clock the majority.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from raftq.errors import NoLeader

__all__ = ["ClusterClock", "majority_time"]

logger = logging.getLogger(__name__)

PROBE_INTERVAL_MS = 1_000  # at most one question to the other nodes per second
SETTLE_GRACE_MS = 5_000  # how long a leader waits for a majority answer before the fallback
_WARN_AFTER_MS = 5_000  # an offset must last this long before it is logged (start-up catch-up)
_WARN_EVERY_MS = 60_000  # then at most one line a minute


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def majority_time(answers: Sequence[int], voters: int) -> int | None:
    """The time a majority of ``voters`` vouches for: the (f+1)-th largest answer, f =
    (voters-1)//2; ``None`` with fewer answers than a majority."""
    if voters < 1 or len(answers) < voters // 2 + 1:
        return None
    return sorted(answers, reverse=True)[(voters - 1) // 2]


class ClusterClock:
    """One node's reading of cluster time (module docstring). Loop thread only.

    Args:
        max_step_ms: the largest step forward this node's own clock may move cluster time
            by (``raft.clock_max_step_ms``).
        voters: how many nodes answer ``offer``'s question (this one included).
        wall_ms, mono_ms: the wall and monotonic clocks in ms (injectable for tests).
        name: this node's id, for log lines.
    """

    def __init__(
        self,
        max_step_ms: int,
        voters: int = 1,
        *,
        wall_ms: Callable[[], int] = _wall_ms,
        mono_ms: Callable[[], int] = _mono_ms,
        settle_grace_ms: int = SETTLE_GRACE_MS,
        probe_interval_ms: int = PROBE_INTERVAL_MS,
        name: str = "",
    ) -> None:
        self.max_step_ms = max_step_ms
        self.voters = voters
        self._wall = wall_ms
        self._mono = mono_ms
        self._grace_ms = settle_grace_ms
        self._probe_every_ms = probe_interval_ms
        self._name = name
        self._anchor: int | None = None  # cluster time at _anchor_mono (None: no time yet)
        self._anchor_mono = 0
        self.confirmed = False  # see the module docstring
        self._unsettled_since: int | None = None  # mono ms the first refused stamp
        self._last_probe: int | None = None  # mono ms
        self._off_since: int | None = None  # mono ms since when W is off by more than step
        self._last_warn: int | None = None

    # -- reading ----------------------------------------------------------------------------

    def estimate(self) -> int | None:
        """Cluster time now as this node estimates it (``None``: no time known yet)."""
        if self._anchor is None:
            return None
        return self._anchor + (self._mono() - self._anchor_mono)

    def offset_ms(self) -> int | None:
        """This node's wall clock minus its estimate of cluster time (positive: ahead)."""
        est = self.estimate()
        return None if est is None else self._wall() - est

    def _anchor_at(self, value: int) -> None:
        self._anchor, self._anchor_mono = value, self._mono()

    # -- every node, every tick loop ---------------------------------------------------------

    def observe(self, applied_ms: int) -> None:
        """The applied (replicated) clock: re-anchor when it is ahead of the estimate."""
        if applied_ms > 0:
            est = self.estimate()
            if est is None or applied_ms > est:
                self._anchor_at(applied_ms)
            est = self.estimate()
            if (
                not self.confirmed
                and est is not None
                and abs(self._wall() - est) <= self.max_step_ms
            ):
                self.confirmed = True  # the live cluster's time agrees with this clock
        self._watch_offset()

    def _watch_offset(self) -> None:
        """Log, at most once a minute, a wall clock off cluster time by more than the step for
        more than a few seconds (shorter: a restarted cluster catching up)."""
        offset = self.offset_ms()
        now = self._mono()
        if offset is None or abs(offset) <= self.max_step_ms:
            self._off_since = None
            return
        if self._off_since is None:
            self._off_since = now
        if now - self._off_since < _WARN_AFTER_MS:
            return
        if self._last_warn is not None and now - self._last_warn < _WARN_EVERY_MS:
            return
        self._last_warn = now
        logger.warning(
            "node %s: wall clock is %.1f s %s cluster time (more than raft.clock_max_step_ms "
            "= %d): cluster time follows real elapsed time and the majority's clocks, not this "
            "one; fix this host's clock (NTP)",
            self._name,
            abs(offset) / 1000,
            "ahead of" if offset > 0 else "behind",
            self.max_step_ms,
        )

    # -- the leader --------------------------------------------------------------------------

    def stamp(self) -> int:
        """The ``now_ms`` to stamp on a command. Raises ``NoLeader`` while cluster time is not
        settled (module docstring)."""
        wall = self._wall()
        est = self.estimate()
        if not self.confirmed and self.voters <= 1:
            self.offer(())  # this node's clock is the majority
            est = self.estimate()
        if not self.confirmed:
            if est is not None and est <= wall <= est + self.max_step_ms:
                self.confirmed = True  # the state on disk is recent: no catch-up to wait for
            else:
                self._refuse_or_fall_back(wall, est)
                est = self.estimate()
        assert est is not None  # confirmed implies a time
        if est <= wall <= est + self.max_step_ms:
            self._anchor_at(wall)
            return wall
        if wall > est + self.max_step_ms and self.voters <= 1:
            self.offer(())
            est = self.estimate()
            assert est is not None
        return est

    def _refuse_or_fall_back(self, wall: int, est: int | None) -> None:
        now = self._mono()
        if self._unsettled_since is None:
            self._unsettled_since = now
        if now - self._unsettled_since < self._grace_ms:
            ahead = "" if est is None else f" (this node's clock is {(wall - est) / 1000:+.1f} s"
            ahead += "" if est is None else " from the last cluster time)"
            raise NoLeader(
                f"cluster time not settled yet{ahead}: asking the other nodes for their "
                "clocks; retry"
            )
        self.confirmed = True
        self._unsettled_since = None
        if est is None:  # a brand-new cluster: this node's clock is all there is to go by
            self._anchor_at(wall)
            logger.warning(
                "node %s: no majority answered for their clocks within %d ms: cluster time "
                "starts from this node's clock; check that every node reaches every other "
                "node's API (GET /v1/clock)",
                self._name,
                self._grace_ms,
            )
            return
        logger.warning(
            "node %s: no majority answered for their clocks within %d ms: cluster time goes on "
            "from the last one the cluster recorded (%+.1f s from this node's clock)",
            self._name,
            self._grace_ms,
            (est - wall) / 1000,
        )

    def _grace_over(self) -> bool:
        """Whether the leader has waited ``settle_grace_ms`` since its first refused stamp."""
        since = self._unsettled_since
        return since is not None and self._mono() - since >= self._grace_ms

    def wants_probe(self) -> bool:
        """Whether the leader should ask the other nodes for their clocks now (rate-limited:
        marks the question as asked)."""
        est = self.estimate()
        needed = not self.confirmed or est is None or self._wall() > est + self.max_step_ms
        now = self._mono()
        if not self.confirmed and self._unsettled_since is None:
            self._unsettled_since = now  # the grace runs from the first question
        if not needed or (
            self._last_probe is not None and now - self._last_probe < self._probe_every_ms
        ):
            return False
        self._last_probe = now
        return True

    def offer(self, answers: Sequence[int]) -> int | None:
        """The other nodes' wall clocks now (ms, compensated for the round trip): with this
        node's own, a majority decides. Returns the majority's time (``None``: too few
        answers). Moves cluster time forward to it when it is more than a step ahead."""
        wall = self._wall()
        est = self.estimate()
        if est is None and len(answers) + 1 < self.voters and not self._grace_over():
            # A brand-new cluster's time is born once: from every node's clock while they
            # can all be heard (their median), a bare majority only after the grace. Two
            # clocks of three cannot tell which one is hours behind; three can.
            return None
        q = majority_time([wall, *answers], self.voters)
        if q is None:
            return None
        if est is None or q > est + self.max_step_ms:
            self._anchor_at(q)
            if est is not None:
                logger.info(
                    "node %s: cluster time moved %.1f s forward to the time a majority of the "
                    "nodes' clocks agree on",
                    self._name,
                    (q - est) / 1000,
                )
        self.confirmed = True
        self._unsettled_since = None
        return q
