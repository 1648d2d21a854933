"""Simulated edge devices for the fleet benchmark: many per process, each on an endpoint of its own.

A device is a real edge node (``edge_node.app.EdgeNode``: the DI DeviceSet with the
SoftwareUpdate AddIn of its slot, the InferenceServer pipeline nodes, the record queue),
without a PLC. A real edge node costs about 1 s to start and 14 MiB, so a thousand of them
do not fit one benchmark; for the idle figures a few edge nodes each serve many endpoints
instead: every extra endpoint is one more asyncua listener (``BinaryServer``) over the same
address space, so a gateway link to it is a session and a subscription of its own, exactly
as to a device of its own, while the edge side's memory is shared. A rollout needs one
address space per device (each device installs for itself): ``spaces=n``.

Connections to the fleet and to the gateway go through ``connect``: signed and encrypted, with a
certificate from the test CA (tests/tls.py), which the devices and the gateway trust, as ModelLine
servers take no other clients.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from asyncua.server.binary_server_asyncio import BinaryServer
from asyncua.server.internal_session import InternalSession

from edge_node.app import EdgeNode
from sdk.opcua.ports import free_port
from tests import tls

_log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class Client(tls.Client):
    """The test client (tests/tls.py), with the certificate in ``pki_dir/own`` when given: a process of its
    own has a test CA of its own, so its parent seeds the folder (``seed_client``)."""

    def __init__(self, url: str, pki_dir: Path | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.pki_dir = pki_dir

    async def connect(self) -> None:
        """Choose the endpoint and set the security once, then connect."""
        if self.pki_dir is not None and not self._secured:
            self._secured = True
            self.application_uri = tls.CLIENT_APP_URI
            await tls.secure(self, pki_dir=self.pki_dir)
        await super().connect()


def seed_client(pki_dir: Path) -> Path:
    """A client PKI folder with a certificate from this process's test CA, for ``connect(..., pki_dir=)``."""
    return tls.seed(pki_dir, tls.CLIENT_APP_URI, "ModelLine bench client")


def connect(url: str, *, timeout: float = 30.0, watchdog_s: float = 600.0, pki_dir: Path | None = None) -> Client:
    """A client for a bench endpoint (anonymous; the endpoints give anonymous clients the Engineer role), over the
    strongest secure endpoint with the test client's certificate (or the one in ``pki_dir``)."""
    return Client(url, pki_dir=pki_dir, timeout=timeout, watchdog_intervall=watchdog_s)


PENDING_ACTIVATION_S = 600.0


class Fleet:
    """``add(n)`` devices named ``edge-0000``..., served by ``spaces_of(n)`` real edge nodes; ``urls`` by id."""

    def __init__(self, folder: Path, trust_dir: Path, per_space: int = 100) -> None:
        # asyncua allows 1,000 activated sessions per process, over all its servers: a fleet of simulated
        # devices in one process takes more (the gateway's links and the floor's sessions at once).
        InternalSession.max_connections = max(InternalSession.max_connections, 100_000)
        self.folder = folder
        self.trust_dir = trust_dir
        self.per_space = per_space  # endpoints per edge node (1: a device of its own)
        self.urls: dict[str, str] = {}
        self.nodes: list[EdgeNode] = []
        self._listeners: list[BinaryServer] = []
        self._stack = AsyncExitStack()
        self._free = 0  # endpoints the newest node can still take

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _new_node(self) -> EdgeNode:
        number = len(self.nodes)
        settings = tls.EdgeSettings(  # trusts the test CA, which issued the gateway's and the clients' certificates
            device_id=f"sim-{number:04d}",
            endpoint=f"opc.tcp://{HOST}:{free_port()}/edge/",
            data_dir=self.folder / f"sim-{number:04d}",
            trust_dir=self.trust_dir,
            anonymous_role="Engineer",  # loopback only: the gateway installs without a login
            inference_threads=1,
        )
        node = await self._stack.enter_async_context(EdgeNode(settings))
        assert node.server is not None
        # One process serves every simulated device and every session to them: with a thousand sessions being
        # made at once a session can wait longer than asyncua's 30 s for its ActivateSession to be served, and
        # asyncua closes such a connection (the floor's clients then saw BadSessionNotActivated).
        node.server.iserver.max_pending_activation_seconds = PENDING_ACTIVATION_S
        self.nodes.append(node)
        self._free = self.per_space
        return node

    async def _listen(self, node: EdgeNode) -> str:
        """One more endpoint over ``node``'s address space (the node's own endpoint first)."""
        if self._free == self.per_space:
            self._free -= 1
            return node.url
        server = node.server
        assert server is not None
        assert server.bserver is not None
        listener = BinaryServer(server.iserver, HOST, 0, server.limits)
        listener.set_policies(server.bserver._policies)  # noqa: SLF001 - the same policies as the node's own
        # One list of connections with the node's own listener: the node finds a session's secure channel there
        # (sdk.opcua.security refuses a session whose channel it cannot find).
        listener.clients = server.bserver.clients
        await listener.start()
        self._listeners.append(listener)
        self._free -= 1
        return f"opc.tcp://{HOST}:{listener.port}/edge/"

    async def add(self, count: int) -> list[str]:
        """``count`` more devices; returns their ids."""
        added = []
        for _ in range(count):
            node = self.nodes[-1] if self.nodes and self._free > 0 else await self._new_node()
            device = f"edge-{len(self.urls):04d}"
            self.urls[device] = await self._listen(node)
            added.append(device)
        return added

    def node_of(self, device: str) -> EdgeNode:
        """The edge node that serves ``device``."""
        index = list(self.urls).index(device) // self.per_space
        return self.nodes[index]

    async def close(self) -> None:
        """Stop every listener and edge node."""
        for listener in self._listeners:
            try:
                await listener.stop()
            except Exception:  # noqa: BLE001 - stopping a bench fleet: go on with the rest
                _log.debug("stopping a listener failed", exc_info=True)
        self._listeners.clear()
        await self._stack.aclose()


async def idle_cpu_s(seconds: float) -> Any:
    """CPU seconds this process used while it slept ``seconds`` (a helper for in-process floors)."""
    import time  # noqa: PLC0415

    start = time.process_time()
    await asyncio.sleep(seconds)
    return time.process_time() - start
