"""Log versions and the enabled version (``EnableVersion``, ``codec.command_version``,
snapshot versions 4 and 5): a command of a version the cluster has not enabled is refused, the
enabled version only goes up, and until it goes above 1 the snapshot is the version 4 that the
previous release reads and writes (byte for byte: ``testdata/snapshot-v4-release.bin`` was
written by the release before log version 2, from the history ``_history`` replays)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftq.core import (
    Ack,
    Claim,
    Claimed,
    EnableVersion,
    Enqueue,
    Machine,
    NewJob,
    Pause,
    Paused,
    Reason,
    Refusal,
    Tick,
    VersionEnabled,
    codec,
    encode_entry,
)
from raftq.core.snapshot import SNAPSHOT_VERSION, snapshot_bytes

T = 1_700_000_000_000
RELEASE_V4 = Path(__file__).parent / "testdata" / "snapshot-v4-release.bin"


def _history(m: Machine) -> None:
    m.apply_entry(
        encode_entry(
            [
                Enqueue(
                    now_ms=T,
                    request_id="e1",
                    queue="q",
                    jobs=(NewJob(payload=b"a", key="k"), NewJob(payload=b"b", priority=5)),
                )
            ]
        )
    )
    claim = Claim(now_ms=T + 1, request_id="c1", queues=("q",), worker="w", max=1, lease_ms=60_000)
    (claimed,) = m.apply_entry(encode_entry([claim]))
    assert isinstance(claimed, Claimed)
    lease = claimed.jobs[0]
    ack = Ack(now_ms=T + 2, request_id="a1", job_id=lease.id, token=lease.token, result=b"ok")
    m.apply_entry(encode_entry([ack]))
    m.apply_entry(encode_entry([Tick(now_ms=T + 3)]))


def _one(m: Machine, cmd: EnableVersion | Pause) -> object:
    (result,) = m.apply_entry(encode_entry([cmd]))
    return result


def test_enable_version_only_goes_up_and_checks_its_range() -> None:
    m = Machine()
    assert m.enabled_version == 1
    assert _one(m, EnableVersion(now_ms=T, version=2)) == VersionEnabled(2)
    assert _one(m, EnableVersion(now_ms=T, version=1)) == VersionEnabled(2)  # never down
    for bad in (0, 65536):
        result = _one(m, EnableVersion(now_ms=T, version=bad))
        assert isinstance(result, Refusal) and result.reason is Reason.INVALID
    assert m.enabled_version == 2


def test_a_command_above_the_enabled_version_is_refused_until_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A release whose Pause is new in log version 2 (the gate is the same for any command).
    monkeypatch.setitem(codec._COMMAND_VERSION, Pause, 2)
    m = Machine()
    refused = _one(m, Pause(now_ms=T, queue="q"))
    assert isinstance(refused, Refusal) and refused.reason is Reason.VERSION_NOT_ENABLED
    assert "needs log version 2, the cluster has enabled 1" in refused.message
    assert "q" not in m.queues  # nothing applied
    _one(m, EnableVersion(now_ms=T, version=2))
    assert _one(m, Pause(now_ms=T, queue="q")) == Paused("q")


def test_the_previous_releases_snapshot_is_read_and_written_the_same() -> None:
    old = RELEASE_V4.read_bytes()
    assert old[16] == 4
    m = Machine()
    _history(m)
    restored = Machine.restore(old)
    restored.check_invariants()
    assert restored.enabled_version == 1
    assert restored.state_digest() == m.state_digest()
    # While log version 1 is the enabled one, this release writes exactly those bytes.
    assert snapshot_bytes(m) == old == snapshot_bytes(restored)


def test_once_version_2_is_enabled_the_snapshot_is_version_5_and_keeps_it() -> None:
    m = Machine()
    _history(m)
    before = snapshot_bytes(m)
    _one(m, EnableVersion(now_ms=T + 4, version=2))
    raw = snapshot_bytes(m)
    assert raw[16] == 5 and SNAPSHOT_VERSION == 6  # 6 once log version 3 is enabled
    restored = Machine.restore(raw)
    restored.check_invariants()
    assert restored.enabled_version == 2
    assert snapshot_bytes(restored) == raw and raw != before


def test_once_version_3_is_enabled_the_snapshot_is_version_6_with_the_flow_tables() -> None:
    m = Machine()
    _history(m)
    _one(m, EnableVersion(now_ms=T + 4, version=2))
    v5 = snapshot_bytes(m)
    _one(m, EnableVersion(now_ms=T + 5, version=3))
    raw = snapshot_bytes(m)
    assert v5[16] == 5 and raw[16] == SNAPSHOT_VERSION == 6
    restored = Machine.restore(raw)
    restored.check_invariants()
    assert restored.enabled_version == 3
    assert snapshot_bytes(restored) == raw
