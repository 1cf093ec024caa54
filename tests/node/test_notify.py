"""``raftq.node.notify``: the sd_notify datagrams, in-process (the real ``raftq serve`` under a
notify socket: tests/integration/test_systemd_notify.py)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from raftq.node.notify import NOTIFY_SOCKET_ENV, notify, notify_when_ready


def _abstract_socket() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"raftq-test-notify-{os.getpid()}-{id(sock)}"
    sock.bind("\0" + name)
    sock.settimeout(2)
    return sock, "@" + name


def test_nothing_is_sent_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)
    assert notify("READY=1") is False


def test_an_abstract_socket_gets_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    sock, name = _abstract_socket()
    with sock:
        monkeypatch.setenv(NOTIFY_SOCKET_ENV, name)
        assert notify("STOPPING=1") is True
        assert sock.recv(4096) == b"STOPPING=1"


def test_a_socket_nobody_binds_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(NOTIFY_SOCKET_ENV, "@raftq-test-notify-nobody-listens")
    assert notify("READY=1") is False
    assert "cannot notify the supervisor" in caplog.text


async def test_ready_is_sent_once_the_condition_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    sock, name = _abstract_socket()
    with sock:
        monkeypatch.setenv(NOTIFY_SOCKET_ENV, name)
        sock.setblocking(False)
        checks = 0

        def ready() -> bool:
            nonlocal checks
            checks += 1
            return checks >= 3

        await notify_when_ready(ready, poll_s=0.01)
        assert checks == 3
        assert sock.recv(4096).split(b"\n")[0] == b"READY=1"
        with pytest.raises(BlockingIOError):  # exactly one datagram
            sock.recv(4096)


async def test_without_notify_socket_readiness_is_not_polled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(NOTIFY_SOCKET_ENV, raising=False)

    def ready() -> bool:
        raise AssertionError("polled without a supervisor")

    await asyncio.wait_for(notify_when_ready(ready), 1)
