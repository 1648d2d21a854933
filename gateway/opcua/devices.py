"""``ModelManager/Devices/<id>``: each registered edge device as an EdgeDeviceType object.

State, LastSeen, Endpoint, ActiveModel and ActiveVersion follow the device link;
DesiredModel and DesiredVersion follow the latest deployment to the device;
``Predictions/<pipeline>/<output>`` mirror the device's outputs (value, status
and timestamps) at the link's publishing interval, so a central HMI reads every
line from one server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from asyncua import Node, Server, ua

from gateway.devices.device import Device
from gateway.opcua.device_link import DeviceLink, Prediction
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.opcua.analog import VariableLayout, add_prediction_variable
from sdk.opcua.ids import data_value, delete_subtree, node_id, path_id, qname
from sdk.opcua.templates import children_by_name
from sdk.opcua.values import new_instance, write_own
from sdk.package.manifest import check_name

_log = logging.getLogger(__name__)


class DeviceNodes:
    """The Devices folder."""

    def __init__(self, server: Server, ns: Namespaces, folder: Node) -> None:
        self.server = server
        self.ns = ns
        self.folder = folder
        self._devices: dict[str, dict[str, Node]] = {}
        self._predictions: dict[tuple[str, str, str], tuple[Node, VariableLayout]] = {}
        self._folders: dict[tuple[str, str], Node] = {}
        self._shown: dict[str, dict[str, object]] = {}  # device -> node name -> the value written last
        self.new_prediction_nodes: list[Callable[[Node], Awaitable[None]]] = []

    async def _device(self, device_id: str) -> dict[str, Node]:
        nodes = self._devices.get(device_id)
        if nodes is None:
            ns_index = self.folder.nodeid.NamespaceIndex
            device = await new_instance(
                self.folder,
                self.server.get_node(node_id(ModelLine.EDGE_DEVICE_TYPE, self.ns.modelline)),
                nodeid=path_id(self.folder.nodeid, device_id),
                bname=qname(device_id, ns_index),
            )
            nodes = await children_by_name(device)
            self._devices[device_id] = nodes
        return nodes

    async def prepare(self, device_id: str) -> None:
        """Make the device's nodes (before its record is saved, so a failure here saves nothing)."""
        await self._device(device_id)

    async def show_unreadable(self, device_id: str, reason: str) -> None:
        """A stored device whose record does not validate: its State is Bad_ConfigurationError, with the reason."""
        try:
            check_name(device_id, "device id")
        except ValueError:
            return  # the id itself is the bad part: no node can carry it; the log names it
        nodes = await self._device(device_id)
        self._shown.pop(device_id, None)
        await self.server.write_attribute_value(
            nodes["State"].nodeid, data_value(status=ua.StatusCodes.BadConfigurationError)
        )
        await nodes["Endpoint"].write_value(ua.Variant(f"stored record unreadable: {reason}", ua.VariantType.String))

    async def show(self, link: Device) -> None:
        """Write what the link knows about its device: only the values that changed since the last call."""
        nodes = await self._device(link.device_id)
        view = link.view
        shown = self._shown.setdefault(link.device_id, {})
        values = {
            "State": ua.Variant(int(view.state), ua.VariantType.Int32),
            "Endpoint": ua.Variant(link.endpoint, ua.VariantType.String),
            "ActiveModel": ua.Variant(view.active_model, ua.VariantType.String),
            "ActiveVersion": ua.Variant(view.active_version, ua.VariantType.String),
        }
        if view.last_seen is not None:
            values["LastSeen"] = ua.Variant(view.last_seen, ua.VariantType.DateTime)
        for name, variant in values.items():
            if shown.get(name) != variant.Value:
                await write_own(self.server, nodes[name].nodeid, variant)
                shown[name] = variant.Value

    async def desired(self, device_id: str, model: str, version: str) -> None:
        """What the latest deployment to the device asks for."""
        nodes = await self._device(device_id)
        await nodes["DesiredModel"].write_value(ua.Variant(model, ua.VariantType.String))
        await nodes["DesiredVersion"].write_value(ua.Variant(version, ua.VariantType.String))

    async def mirror(self, link: DeviceLink, prediction: Prediction) -> None:
        """Copy one prediction under Predictions/<pipeline>/<output>."""
        key = (link.device_id, prediction.pipeline, prediction.output)
        node, layout = self._predictions.get(key, (None, None))
        if node is not None and layout != prediction.layout:  # a new model changed the output: replace it
            await delete_subtree(node)
            node = None
        if node is None:
            nodes = await self._device(link.device_id)
            folder = self._folders.get(key[:2])
            ns_index = self.folder.nodeid.NamespaceIndex
            if folder is None:
                parent = nodes["Predictions"]
                folder = await parent.add_folder(
                    path_id(parent.nodeid, prediction.pipeline), qname(prediction.pipeline, ns_index)
                )
                self._folders[key[:2]] = folder
            node = await add_prediction_variable(
                folder, path_id(folder.nodeid, prediction.output), qname(prediction.output, ns_index), prediction.layout
            )
            self._predictions[key] = (node, prediction.layout)
            for listener in self.new_prediction_nodes:  # the gateway historizes them
                await listener(node)
        variant = prediction.layout.variant(prediction.value)
        await self.server.write_attribute_value(
            node.nodeid, data_value(variant, prediction.status, prediction.source_time, prediction.server_time)
        )
