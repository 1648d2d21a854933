"""The ModelManager's methods and its Deployments folder.

Handlers translate, services decide: ``bind_method`` refuses calls whose arguments
do not match the method's InputArguments; each handler checks the caller's role
and hands the values to a service, whose refusals answer Bad_InvalidArgument,
Bad_NotFound or Bad_InvalidState with the reason logged, never an exception trace.

Each deployment shows its targets one by one, in the order of Targets: TargetStates and
TargetErrors follow the stored target records, ServingVersions follows what each device
reports (its ActiveVersion), so a client sees what the devices really run, not only what the
rollout last did.
"""

from __future__ import annotations

import logging

from asyncua import Node, Server, ua

from gateway.deployments.service import DeploymentService
from gateway.devices.device import Device
from gateway.devices.registry import DeviceRegistry
from gateway.opcua.devices import DeviceNodes
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets import Namespaces
from nodesets.ids import DeploymentState, ModelLine
from sdk.opcua import sessions
from sdk.opcua.audited import audited
from sdk.opcua.ids import node_id, path_id, qname
from sdk.opcua.methods import Handler, bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.templates import children_by_name
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance
from sdk.package.manifest import check_name

_log = logging.getLogger(__name__)

S = ua.VariantType.String


def _text(value: ua.Variant) -> str:
    """A String argument (bind_method has checked its type); a null String is empty."""
    return str(value.Value or "")


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
        self._targets: dict[str, list[str]] = {}  # deployment id -> its Targets, for device changes
        self._serving: dict[str, list[str]] = {}  # deployment id -> ServingVersions as written

    async def bind(self) -> ManagerNodes:
        """Link the methods; show stored deployments."""
        self.folder = await self.manager.get_child(f"{self.ns.modelline}:Deployments")
        handlers: dict[str, Handler] = {
            "Deploy": self._deploy,
            "Undeploy": self._undeploy,
            "Rollback": self._rollback,
            "RegisterDevice": self._register,
        }
        for name, handler in handlers.items():
            await bind_method(self.server, await self.manager.get_child(f"{self.ns.modelline}:{name}"), handler)
        self.service.listeners.append(self.show)
        self.devices.add_listener(self.device_changed)
        return self

    async def _deployment(self, deployment_id: str) -> tuple[dict[str, Node], bool]:
        nodes = self._nodes.get(deployment_id)
        if nodes is not None:
            return nodes, False
        ns_index = self.folder.nodeid.NamespaceIndex
        node = await new_instance(
            self.folder,
            self.server.get_node(node_id(ModelLine.DEPLOYMENT_TYPE, self.ns.modelline)),
            nodeid=path_id(self.folder.nodeid, deployment_id),
            bname=qname(deployment_id, ns_index),
        )
        nodes = await children_by_name(node)
        self._nodes[deployment_id] = nodes
        return nodes, True

    async def show_unreadable(self, deployment_id: str, reason: str) -> None:
        """A stored deployment whose record does not validate: State Failed, LastError says why."""
        try:
            check_name(deployment_id, "deployment id")
        except ValueError:
            return  # the id itself is the bad part: no node can carry it; the log names it
        nodes, _ = await self._deployment(deployment_id)
        await nodes["State"].write_value(ua.Variant(int(DeploymentState.FAILED), ua.VariantType.Int32))
        await nodes["LastError"].write_value(ua.Variant(f"stored record unreadable: {reason}", S))

    async def show(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Create or update Deployments/<id>."""
        nodes, new = await self._deployment(record.id)
        if new:
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
        by_device = {t.device_id: t for t in targets}
        mine = [by_device.get(d) for d in record.targets]  # every target has a row from the start; else Pending
        values["TargetStates"] = ua.Variant(
            [int(t.state if t else DeploymentState.PENDING) for t in mine], ua.VariantType.Int32
        )
        values["TargetErrors"] = ua.Variant([t.last_error if t else "" for t in mine], S)
        for name, value in values.items():
            await nodes[name].write_value(value)
        self._targets[record.id] = list(record.targets)
        await self._show_serving(record.id)

    async def device_changed(self, device: Device) -> None:
        """A device reported a change: ServingVersions of every deployment that targets it."""
        for deployment_id, targets in self._targets.items():
            if device.device_id in targets:
                await self._show_serving(deployment_id)

    async def _show_serving(self, deployment_id: str) -> None:
        serving = [self._serving_version(d) for d in self._targets[deployment_id]]
        if self._serving.get(deployment_id) != serving:  # devices report often (health, states): write changes only
            await self._nodes[deployment_id]["ServingVersions"].write_value(ua.Variant(serving, S))
            self._serving[deployment_id] = serving

    def _serving_version(self, device_id: str) -> str:
        link = self.devices.links.get(device_id)
        return link.view.active_version if link is not None else ""

    @status_on_error
    @requires(Role.ENGINEER)
    @audited("deploy", record_ok=False)
    async def _deploy(
        self, parent: ua.NodeId, model: ua.Variant, version: ua.Variant, targets: ua.Variant, options: ua.Variant
    ) -> list[ua.Variant]:
        deployment_id = await self.service.deploy(
            _text(model), _text(version), [t or "" for t in targets.Value or []], _text(options), _actor()
        )
        return [ua.Variant(deployment_id, S)]

    @status_on_error
    @requires(Role.ENGINEER)
    @audited("undeploy", record_ok=False)
    async def _undeploy(self, parent: ua.NodeId, deployment_id: ua.Variant) -> list[ua.Variant]:
        await self.service.undeploy(_text(deployment_id), _actor())
        return []

    @status_on_error
    @requires(Role.ENGINEER)
    @audited("rollback", record_ok=False)
    async def _rollback(self, parent: ua.NodeId, target: ua.Variant, version: ua.Variant) -> list[ua.Variant]:
        return [ua.Variant(await self.service.rollback(_text(target), _text(version), _actor()), S)]

    @status_on_error
    @requires(Role.ENGINEER)
    @audited("register device", record_ok=False)
    async def _register(self, parent: ua.NodeId, device_id: ua.Variant, endpoint: ua.Variant) -> list[ua.Variant]:
        await self.devices.register(_text(device_id), _text(endpoint), _actor())
        return []
