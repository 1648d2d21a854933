"""The edge node's OPC UA server: information models, capabilities, and the DI device."""

from __future__ import annotations

import logging
import platform

from asyncua import Node, Server, ua

import nodesets
from edge_node.settings import EdgeSettings
from nodesets.ids import DI, DeviceHealth, ModelLine
from sdk import __version__
from sdk.opcua.connect import EDGE_URI_PREFIX, GATEWAY_URI
from sdk.opcua.ids import escape_part, node_id, path_id, qname
from sdk.opcua.keepalive import keep_alive_on_change
from sdk.opcua.service import new_server
from sdk.opcua.values import new_instance

_log = logging.getLogger(__name__)


def application_uri(settings: EdgeSettings) -> str:
    """The edge node's ApplicationUri, in its certificate too; its client links use the same."""
    return f"{EDGE_URI_PREFIX}{settings.device_id}"


async def create_server(settings: EdgeSettings) -> tuple[Server, nodesets.Namespaces, int]:
    """The edge node's server (not yet started), its model namespaces and its instance namespace."""
    server, ns, instance_ns = await new_server(
        endpoint=settings.endpoint,
        name=f"ModelLine Edge {settings.device_id}",
        application_uri=application_uri(settings),
        product="edge",
        manufacturer=settings.manufacturer,
        users_file=settings.users_file,
        anonymous_role=settings.anonymous_role,
        login_policy=settings.login_policy,
        max_byte_string=settings.max_byte_string,
        pki_dir=settings.data_dir / "pki",
        allow_insecure=settings.allow_insecure,
        certificate_roles={GATEWAY_URI: "Engineer"},  # the gateway's links log in with its certificate
    )
    keep_alive_on_change(server)  # subscribers of predictions at publishing interval 0 get keep-alives too
    return server, ns, instance_ns


async def create_device(server: Server, ns: nodesets.Namespaces, instance_ns: int, settings: EdgeSettings) -> Node:
    """``DeviceSet/<device id>``: a DI DeviceType with its identification and DeviceHealth."""
    device_set = server.get_node(node_id(DI.DEVICE_SET, ns.di))
    device = await new_instance(
        device_set,
        server.get_node(node_id(ModelLine.INFERENCE_DEVICE_TYPE, ns.modelline)),
        nodeid=node_id(escape_part(settings.device_id), instance_ns),
        bname=qname(settings.device_id, instance_ns),
        optional=False,
    )
    values = {
        "Manufacturer": ua.Variant(ua.LocalizedText(settings.manufacturer), ua.VariantType.LocalizedText),
        "Model": ua.Variant(ua.LocalizedText("ModelLine Edge Inference Server"), ua.VariantType.LocalizedText),
        "SerialNumber": ua.Variant(settings.device_id, ua.VariantType.String),
        "SoftwareRevision": ua.Variant(__version__, ua.VariantType.String),
        "HardwareRevision": ua.Variant(platform.machine(), ua.VariantType.String),
        "DeviceRevision": ua.Variant("1", ua.VariantType.String),
        "DeviceManual": ua.Variant("https://github.com/modelline (README: Run an edge node)", ua.VariantType.String),
        "RevisionCounter": ua.Variant(0, ua.VariantType.Int32),
    }
    for name, value in values.items():
        await (await device.get_child(f"{ns.di}:{name}")).write_value(value)
    await device.add_variable(
        path_id(device.nodeid, "DeviceHealth"),
        qname("DeviceHealth", ns.di),
        ua.Variant(DeviceHealth.NORMAL, ua.VariantType.Int32),
        datatype=node_id(DI.DEVICE_HEALTH_ENUMERATION, ns.di),
    )
    return device
