"""Collecting each edge node's audit trail over its device link (OPC 10000-4 6.5: audit records, not events).

A session worker of the link pulls ``Objects/Audit.FetchAuditRecords("", after, n)`` with ``after`` the
newest device sequence the store holds for that device, stores the records tagged with the device id
(a record already stored is skipped: the store's (device, device sequence) key), and waits
``interval_s`` once it has caught up. Nothing is acknowledged or deleted on the edge node: its trail
stays whole. Pulling (not subscribing to AuditEvents) survives lost connections and gateway restarts
without a gap, since the next pull starts after what was committed.
"""

from __future__ import annotations

import asyncio
import logging

from asyncua import Client, ua
from pydantic import ValidationError

from gateway.opcua.device_link import DeviceLink, SessionWorker
from gateway.store.base import Store
from nodesets.ids import MODELLINE_URI
from sdk.audit import AuditRecord

_log = logging.getLogger(__name__)

BATCH = 500


def audit_collector(store: Store, interval_s: float) -> SessionWorker:
    """A device link's session worker that copies the device's audit records into the gateway's store."""

    async def collect(link: DeviceLink, client: Client) -> None:
        ml = await client.get_namespace_index(MODELLINE_URI)
        try:
            trail = await client.nodes.objects.get_child(f"{ml}:Audit")
            fetch = await trail.get_child(f"{ml}:FetchAuditRecords")
        except ua.UaStatusCodeError:
            _log.info("device %s keeps no audit trail (an older release); not collected", link.device_id)
            return
        while True:
            after = await store.last_collected(link.device_id)
            try:
                texts, _last = await trail.call_method(
                    fetch.nodeid,
                    ua.Variant("", ua.VariantType.String),
                    ua.Variant(after, ua.VariantType.UInt64),
                    ua.Variant(BATCH, ua.VariantType.UInt32),
                )
            except ua.uaerrors.BadUserAccessDenied:  # asking again would only fill the device's trail with refusals
                _log.warning(
                    "device %s: reading its audit trail needs the Engineer role (edge_user); not collected",
                    link.device_id,
                )
                return
            records = []
            for text in texts or []:
                try:
                    records.append(AuditRecord.model_validate_json(text).model_copy(update={"device": link.device_id}))
                except ValidationError as exc:
                    _log.warning("device %s: an audit record is unreadable and skipped: %s", link.device_id, exc)
            if records:
                stored = await store.append(records)
                _log.debug("device %s: %d audit record(s) collected", link.device_id, len(stored))
            if len(texts or []) < BATCH:
                await asyncio.sleep(interval_s)

    return collect
