"""The ModelManager's methods and its Deployments folder.

Handlers translate, services decide: each checks the caller's role and its
arguments (asyncua does not) and answers Bad_InvalidArgument, Bad_NotFound or
Bad_InvalidState with the service's reason logged, never an exception trace.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncua import Node, Server, ua

from gateway.deployments.service import DeploymentService
from gateway.devices.registry import DeviceRegistry
from gateway.opcua.devices import DeviceNodes
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.opcua import sessions
from sdk.opcua.ids import node_id, path_id, qname
from sdk.opcua.status import StatusError, arg, status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance

_log = logging.getLogger(__name__)

S = ua.VariantType.String


def _actor() -> str:
    user = sessions.current_user()
    return getattr(user, "name", None) or "anonymous"


class ManagerNodes:
    """Binds the ModelManager's methods and shows each deployment."""

    def __init__(
        self,
        server: Server,
        ns: Namespaces,
        manager: Node,
        deployments: DeploymentService,
        devices: DeviceRegistry,
        device_nodes: DeviceNodes,
    ) -> None:
        self.server = server
        self.ns = ns
        self.manager = manager
        self.service = deployments
        self.devices = devices
        self.device_nodes = device_nodes
        self._nodes: dict[str, dict[str, Node]] = {}

    async def bind(self) -> ManagerNodes:
        """Link the methods; show stored deployments."""
        self.folder = await self.manager.get_child(f"{self.ns.modelline}:Deployments")
        handlers = {
            "Deploy": self._deploy,
            "Undeploy": self._undeploy,
            "Rollback": self._rollback,
            "RegisterDevice": self._register,
        }
        for name, handler in handlers.items():
            self.server.link_method(await self.manager.get_child(f"{self.ns.modelline}:{name}"), handler)
        self.service.listeners.append(self.show)
        return self

    async def show(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Create or update Deployments/<id>."""
        nodes = self._nodes.get(record.id)
        if nodes is None:
            ns_index = self.folder.nodeid.NamespaceIndex
            node = await new_instance(
                self.folder,
                self.server.get_node(node_id(ModelLine.DEPLOYMENT_TYPE, self.ns.modelline)),
                nodeid=path_id(self.folder.nodeid, record.id),
                bname=qname(record.id, ns_index),
            )
            nodes = {str((await c.read_browse_name()).Name): c for c in await node.get_children()}
            self._nodes[record.id] = nodes
            for device in record.targets:
                await self.device_nodes.desired(device, record.model, record.version)
        values = {
            "Model": ua.Variant(record.model, S),
            "Version": ua.Variant(record.version, S),
            "Targets": ua.Variant(record.targets, S),
            "State": ua.Variant(int(record.state), ua.VariantType.Int32),
            "Progress": ua.Variant(record.progress, ua.VariantType.Double),
            "LastError": ua.Variant(record.last_error, S),
        }
        for name, value in values.items():
            await nodes[name].write_value(value)

    @status_on_error
    @requires(Role.ENGINEER)
    async def _deploy(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        model = arg(args, 0, (S,), "Model")
        version = arg(args, 1, (S,), "Version")
        targets = args[2].Value if len(args) > 2 and isinstance(args[2], ua.Variant) else None
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise StatusError(ua.StatusCodes.BadInvalidArgument, "Targets must be an array of device ids (String[])")
        options = arg(args, 3, (S,), "OptionsJson", optional=True) or ""
        deployment_id = await self.service.deploy(model or "", version or "", targets, options, _actor())
        return [ua.Variant(deployment_id, S)]

    @status_on_error
    @requires(Role.ENGINEER)
    async def _undeploy(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        await self.service.undeploy(arg(args, 0, (S,), "DeploymentId") or "", _actor())
        return []

    @status_on_error
    @requires(Role.ENGINEER)
    async def _rollback(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        target = arg(args, 0, (S,), "Target") or ""
        version = arg(args, 1, (S,), "Version", optional=True) or ""
        return [ua.Variant(await self.service.rollback(target, version, _actor()), S)]

    @status_on_error
    @requires(Role.ENGINEER)
    async def _register(self, parent: ua.NodeId, *args: Any) -> list[ua.Variant]:
        await self.devices.register(
            arg(args, 0, (S,), "DeviceId") or "", arg(args, 1, (S,), "EndpointUrl") or "", _actor()
        )
        return []
