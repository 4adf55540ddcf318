"""Shared fixtures. No test touches the network: sockets may only connect to loopback."""

from __future__ import annotations

import ipaddress
import socket

import numpy as np
import pytest

from refine_agent.images import Image

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(address: object) -> None:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost",):
        return
    try:
        if ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            return
    except ValueError:
        pass
    raise ConnectionRefusedError(f"tests may not use the network (tried to connect to {address!r})")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def solid(value: int, size: tuple[int, int] = (8, 8)) -> Image:
    """A small uniform image; different ``value``s give different content hashes."""
    arr = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    return Image(arr)


@pytest.fixture
def images() -> list[Image]:
    return [solid(v) for v in range(0, 250, 10)]
