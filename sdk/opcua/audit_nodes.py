"""``Objects/Audit`` (ModelLine AuditLogType): the server's audit trail, read over OPC UA.

FetchAuditRecords(Device, AfterSequence, MaxRecords) -> (Records, LastSequence) pages through the
log like FetchRecords does the record queue (sdk/monitor/records.py), but nothing is ever
acknowledged or deleted: collecting an edge node's trail leaves it whole. Reading it needs the
Engineer role (SecurityAdmin has it too): the trail names users and client addresses.
"""

from __future__ import annotations

from asyncua import Node, Server, ua

from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk.audit import AuditLog, AuditRecord
from sdk.opcua.ids import node_id, qname
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import new_instance


class AuditNodes:
    """The Audit object over one AuditLog."""

    def __init__(self, node: Node, last: Node, log: AuditLog) -> None:
        self.node = node
        self._last = last
        self._log = log

    @classmethod
    async def create(cls, server: Server, ns: Namespaces, instance_ns: int, log: AuditLog) -> AuditNodes:
        """Instantiate ``Objects/Audit`` and bind FetchAuditRecords."""
        node = await new_instance(
            server.nodes.objects,
            server.get_node(node_id(ModelLine.AUDIT_LOG_TYPE, ns.modelline)),
            nodeid=node_id("Audit", instance_ns),
            bname=qname("Audit", ns.modelline),
        )
        self = cls(node, await node.get_child(f"{ns.modelline}:LastSequence"), log)
        await bind_method(server, await node.get_child(f"{ns.modelline}:FetchAuditRecords"), self._fetch_audit_records)
        await self._last.write_value(ua.Variant(await log.newest(), ua.VariantType.UInt64))
        return self

    async def written(self, records: list[AuditRecord]) -> None:
        """Show the newest sequence (a listener of the AuditWriter)."""
        own = [r.seq for r in records if not r.device]
        if own:
            await self._last.write_value(ua.Variant(max(own), ua.VariantType.UInt64))

    @status_on_error
    @requires(Role.ENGINEER)
    async def _fetch_audit_records(
        self, parent: ua.NodeId, device: ua.Variant, after: ua.Variant, max_records: ua.Variant
    ) -> list[ua.Variant]:
        start = int(after.Value or 0)
        records = await self._log.fetch(str(device.Value or ""), start, int(max_records.Value or 0))
        return [
            ua.Variant([r.model_dump_json() for r in records], ua.VariantType.String, is_array=True),
            ua.Variant(records[-1].seq if records else start, ua.VariantType.UInt64),
        ]
