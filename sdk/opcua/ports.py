"""Free loopback ports for servers started on the fly (the demo, the tests).

A port handed out by the kernel for ``bind(0)`` comes from the ephemeral range, the same range
outgoing connections take their local ports from: between choosing it and the server binding
it, a client connection may take it (EADDRINUSE). Ports are therefore chosen below the ephemeral
range, at random, and checked free by binding them once.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_FLOOR = 20000
_handed_out: set[int] = set()  # never the same port twice from one process, even before its server binds it


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago and that no outgoing connection will take."""
    top = _ephemeral_start()
    if top - _FLOOR < 1000:  # an unusual range: fall back to the kernel's choice
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    for _ in range(200):
        port = random.randrange(_FLOOR, top)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free port on {host} between {_FLOOR} and {top}")
