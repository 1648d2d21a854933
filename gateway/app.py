"""The gateway service: the Model Manager's OPC UA server over the store and the package repository.

    async with Gateway(settings) as gateway:   # store open, address space rebuilt from it, server started
        await gateway.wait_closed()

Devices and deployments (RegisterDevice, Deploy, Undeploy, Rollback) are not
served yet: their methods answer Bad_NotImplemented.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any, Self

from asyncua import Server, ua
from asyncua.common.instantiate_util import instantiate

import nodesets
from gateway.models.repository import PackageRepository
from gateway.opcua.models import ModelNodes
from gateway.settings import GatewaySettings
from gateway.store.sqlite import SqliteStore
from sdk import __version__
from sdk.keys import TrustStore
from sdk.opcua import sessions
from sdk.opcua.ids import node_id, qname, status_code
from sdk.opcua.users import UserStore

_log = logging.getLogger(__name__)

MODEL_MANAGER_TYPE = 1010
INSTANCE_URI = "urn:modelline:gateway"


class Gateway:
    """The Model Manager."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._stack = AsyncExitStack()
        self._closed = asyncio.Event()
        self.server: Server | None = None

    @property
    def url(self) -> str:
        """The endpoint clients connect to."""
        return self.settings.endpoint

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        s = self.settings
        trust = TrustStore.load(s.trust_dir)
        self.store = await self._stack.enter_async_context(SqliteStore.open(s.db_path))
        self.repository = PackageRepository(self.store, s.packages_dir, trust)
        sessions.install()
        server = Server(user_manager=UserStore.load(s.users_file, s.anonymous_role or None))
        await server.init()
        server.set_endpoint(s.endpoint)
        server.set_server_name("ModelLine Model Manager")
        await server.set_application_uri(INSTANCE_URI)
        await server.set_build_info(
            product_uri="urn:modelline:gateway",
            manufacturer_name="ModelLine",
            product_name="ModelLine Gateway",
            software_version=__version__,
            build_number=__version__,
            build_date=ua.get_win_epoch(),
        )
        ns = await nodesets.load(server)
        instance_ns = await server.register_namespace(INSTANCE_URI)
        await server.get_node(node_id(ua.ObjectIds.Server_ServerCapabilities_MaxByteStringLength)).write_value(
            ua.Variant(s.max_byte_string, ua.VariantType.UInt32)
        )
        manager = (
            await instantiate(
                server.nodes.objects,
                server.get_node(node_id(MODEL_MANAGER_TYPE, ns.modelline)),
                nodeid=node_id("ModelManager", instance_ns),
                bname=qname("ModelManager", ns.modelline),
            )
        )[0]
        for method in ("Deploy", "Undeploy", "Rollback", "RegisterDevice"):
            server.link_method(await manager.get_child(f"{ns.modelline}:{method}"), _not_yet)
        self.models = await ModelNodes(
            server, ns, manager, self.repository, s.data_dir / "uploads", s.max_byte_string
        ).bind()
        self.server = server
        await self._stack.enter_async_context(server)
        _log.info("gateway serving at %s with %s", s.endpoint, self.models.describe())

    async def wait_closed(self) -> None:
        """Serve until cancelled."""
        await self._closed.wait()


async def _not_yet(parent: ua.NodeId, *args: Any) -> ua.StatusCode:
    """Devices and deployments arrive with the next release of the gateway."""
    return status_code(ua.StatusCodes.BadNotImplemented)
