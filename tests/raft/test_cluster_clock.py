"""``ClusterClock`` with fake wall and monotonic clocks: what a node stamps when its clock is
hours off, after a whole-cluster restart, on a brand-new cluster, alone, and across a leader
change (raftq/raft/cluster_clock.py)."""

from __future__ import annotations

import pytest

from raftq.errors import NoLeader
from raftq.raft.cluster_clock import SETTLE_GRACE_MS, ClusterClock, majority_time

STEP = 1_000
HOUR = 3_600_000
REAL0 = 1_700_000_000_000  # "real" time at the start of each test


class Host:
    """One machine: real time passes for all hosts alike; a host's wall clock is real time
    plus its skew, its monotonic clock starts anywhere."""

    def __init__(self, world: World, skew_ms: int = 0) -> None:
        self.world = world
        self.skew_ms = skew_ms

    def wall(self) -> int:
        return self.world.real + self.skew_ms

    def mono(self) -> int:
        return self.world.real - REAL0 + 12_345

    def clock(self, voters: int = 3) -> ClusterClock:
        return ClusterClock(STEP, voters, wall_ms=self.wall, mono_ms=self.mono, name="nX")


class World:
    def __init__(self) -> None:
        self.real = REAL0

    def advance(self, ms: int) -> None:
        self.real += ms


@pytest.fixture
def world() -> World:
    return World()


def test_majority_time_is_never_above_every_correct_clock() -> None:
    real = REAL0
    assert majority_time([real + 6 * HOUR, real, real - 5], 3) == real
    assert majority_time([real + 6 * HOUR, real], 3) == real  # a bare majority: its minimum
    assert majority_time([real + 6 * HOUR, real + 6 * HOUR, real, real, real], 5) == real
    assert majority_time([real + 6 * HOUR], 3) is None  # no majority
    assert majority_time([real + 6 * HOUR], 1) == real + 6 * HOUR  # alone: own clock


def _live_follower(world: World, host: Host, applied: int) -> ClusterClock:
    """A node that has been following a live cluster whose time is ``applied``."""
    clock = host.clock()
    clock.observe(applied)
    return clock


def test_a_leader_six_hours_ahead_stamps_real_time_and_keeps_leases(world: World) -> None:
    ahead = Host(world, +6 * HOUR)
    clock = _live_follower(world, ahead, world.real)  # elected leader now
    assert not clock.confirmed  # its clock disagrees with the cluster's
    with pytest.raises(NoLeader, match="not settled"):
        clock.stamp()
    assert clock.wants_probe()
    assert not clock.wants_probe()  # one question a second
    # The two correct nodes answer: the majority's time is real time, no jump.
    clock.offer([world.real, world.real + 3])
    for _ in range(40):
        world.advance(250)
        stamped = clock.stamp()
        assert abs(stamped - world.real) <= STEP  # never six hours ahead
    assert clock.offset_ms() == pytest.approx(6 * HOUR, abs=STEP)


def test_a_correct_leader_whose_clock_jumps_ahead_keeps_stamping_real_time(world: World) -> None:
    host = Host(world)
    clock = _live_follower(world, host, world.real)
    assert clock.stamp() == world.real
    host.skew_ms = 6 * HOUR  # mid-leadership
    world.advance(250)
    assert clock.stamp() == world.real  # est: no refusal, no jump
    assert clock.wants_probe()
    clock.offer([world.real, world.real])
    world.advance(5_000)
    assert clock.stamp() == world.real


def test_a_leader_six_hours_behind_never_freezes_cluster_time(world: World) -> None:
    behind = Host(world, -6 * HOUR)
    clock = _live_follower(world, behind, world.real)
    with pytest.raises(NoLeader):
        clock.stamp()
    clock.offer([world.real, world.real])  # its own answer is the lowest: ignored
    last = clock.stamp()
    for _ in range(20):
        world.advance(500)
        stamped = clock.stamp()
        assert stamped - last == 500  # real elapsed time
        last = stamped
    assert abs(last - world.real) <= STEP


def test_after_a_skewed_leader_a_correct_leader_continues(world: World) -> None:
    ahead = Host(world, +6 * HOUR)
    skewed = _live_follower(world, ahead, world.real)
    skewed.offer([world.real, world.real])
    follower = _live_follower(world, Host(world), world.real)
    for _ in range(8):  # the skewed node leads; the correct one follows its Ticks
        world.advance(250)
        follower.observe(skewed.stamp())
    world.advance(250)
    assert follower.confirmed
    stamped = follower.stamp()  # the correct node is elected: its own clock, smoothly
    assert stamped == world.real
    world.advance(10_000)
    assert follower.stamp() == world.real  # goes on: leases expire, delayed jobs fall due


def test_a_whole_cluster_restart_catches_up_with_the_majority(world: World) -> None:
    applied = world.real
    world.advance(2 * HOUR)  # downtime
    clock = _live_follower(world, Host(world), applied)  # the restarted leader's replayed state
    with pytest.raises(NoLeader):  # no lease granted at a time two hours stale
        clock.stamp()
    clock.offer([world.real - 2, world.real + 2])
    assert abs(clock.stamp() - world.real) <= 2  # delayed jobs fall due at their time


@pytest.mark.parametrize("skew", [+6 * HOUR, -6 * HOUR])
def test_a_skewed_leader_after_a_whole_cluster_restart_stamps_real_time(
    world: World, skew: int
) -> None:
    applied = world.real
    world.advance(2 * HOUR)
    clock = _live_follower(world, Host(world, skew), applied)
    assert clock.wants_probe()  # even when its own clock is behind the state on disk
    clock.offer([world.real, world.real])
    assert clock.stamp() == world.real


def test_without_answers_a_restarted_leader_falls_back_to_the_state_on_disk(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    applied = world.real
    world.advance(HOUR)
    clock = _live_follower(world, Host(world), applied)
    with pytest.raises(NoLeader):
        clock.stamp()
    assert clock.offer([]) is None  # the other nodes' HTTP does not answer
    world.advance(SETTLE_GRACE_MS)
    stamped = clock.stamp()  # goes on from the recorded time rather than stay unavailable
    assert stamped == applied + SETTLE_GRACE_MS
    assert "no majority answered" in caplog.text
    world.advance(1_000)
    assert clock.wants_probe()  # and keeps asking: the catch-up comes when they answer
    clock.offer([world.real, world.real])
    assert clock.stamp() == world.real


def test_a_brand_new_cluster_waits_for_a_majority_before_stamping(world: World) -> None:
    clock = Host(world).clock()
    clock.observe(0)  # nothing applied: no time at all
    with pytest.raises(NoLeader, match="not settled"):
        clock.stamp()  # never 1970
    world.advance(SETTLE_GRACE_MS // 2)
    with pytest.raises(NoLeader, match="not settled"):
        clock.stamp()
    assert clock.offer([world.real + 1]) is None  # within the grace: every clock, if it can
    clock.offer([world.real + 1, world.real + 2])
    assert abs(clock.stamp() - world.real - 1) <= 1


def test_a_brand_new_cluster_whose_nodes_never_answer_starts_from_the_leaders_clock(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Refusing every write for good because the nodes cannot reach each other's APIs would
    be worse than this node's clock: after the grace, it is cluster time's start (logged)."""
    host = Host(world, +3)
    clock = host.clock()
    assert clock.wants_probe()  # the grace runs from the first question
    with pytest.raises(NoLeader, match="not settled"):
        clock.stamp()
    world.advance(SETTLE_GRACE_MS)
    assert clock.stamp() == host.wall()
    assert "cluster time starts from this node's clock" in caplog.text


def test_a_brand_new_cluster_with_a_skewed_leader_gets_the_majority_time(world: World) -> None:
    clock = Host(world, +6 * HOUR).clock()
    clock.offer([world.real, world.real])
    assert clock.stamp() == world.real


def test_a_brand_new_cluster_led_by_a_clock_behind_waits_for_every_clock(world: World) -> None:
    """Two clocks of three cannot tell which is hours behind: a new cluster's time is born from
    all three while they answer (a bare majority only after the grace)."""
    clock = Host(world, -6 * HOUR).clock()
    with pytest.raises(NoLeader, match="not settled"):
        clock.stamp()
    assert clock.offer([world.real]) is None  # one peer of two: not yet
    with pytest.raises(NoLeader, match="not settled"):
        clock.stamp()
    clock.offer([world.real, world.real + 3])
    assert clock.stamp() == world.real


@pytest.mark.parametrize("skew", [0, +6 * HOUR])
def test_a_single_node_is_its_own_majority(world: World, skew: int) -> None:
    host = Host(world, skew)
    clock = host.clock(voters=1)
    assert clock.stamp() == host.wall()  # brand new: at once, no question
    world.advance(HOUR)  # restart after downtime
    restarted = host.clock(voters=1)
    restarted.observe(clock.stamp() - HOUR)
    assert restarted.stamp() == host.wall()
    host.skew_ms -= 6 * HOUR  # its clock goes back: cluster time does not, nor freezes
    before = restarted.stamp()
    world.advance(1_000)
    assert restarted.stamp() == before + 1_000


def test_a_clock_off_by_more_than_the_step_is_logged_once_it_lasts(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    clock = _live_follower(world, Host(world, +6 * HOUR), world.real)
    assert "wall clock" not in caplog.text  # a catch-up after a restart takes less
    world.advance(5_000)
    clock.observe(world.real)
    assert "wall clock is 21600.0 s ahead of cluster time" in caplog.text
    assert "raft.clock_max_step_ms" in caplog.text
