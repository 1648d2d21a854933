"""Ports for servers are free and outside the range outgoing connections draw from."""

from __future__ import annotations

import socket

import pytest

from sdk.opcua import ports


def test_ports_are_free_and_below_the_ephemeral_range() -> None:
    top = ports._ephemeral_start()
    seen = {ports.free_port() for _ in range(20)}
    assert len(seen) > 1  # chosen at random, not one fixed port
    for port in seen:
        assert ports._FLOOR <= port < top
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_taken_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", ports.free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        other = ports.free_port()
        ports._handed_out.discard(other)  # as if another process had handed it out
        picks = iter([busy, busy, other])
        monkeypatch.setattr(ports.random, "randrange", lambda *_: next(picks))
        assert ports.free_port() == other


def test_one_process_never_gets_the_same_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    first = ports.free_port()
    second = ports.free_port()
    picks = iter([first, second, first])
    draw = ports.random.randrange
    monkeypatch.setattr(ports.random, "randrange", lambda *a: next(picks, None) or draw(*a))
    assert ports.free_port() not in {first, second}  # both still free (no server bound them yet), yet skipped
