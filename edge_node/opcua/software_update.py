"""A model slot as a DI SoftwareType component with a SoftwareUpdate AddIn (OPC 10000-100 section 8).

    DeviceSet/<device>/<slot>                   SoftwareType: Manufacturer, Model, SoftwareRevision
      SoftwareUpdate                            SoftwareUpdateType (HasAddIn)
        Loading                                 CachedLoadingType (8.4.5)
          CurrentVersion / PendingVersion / FallbackVersion   SoftwareVersionType (8.4.11)
          FileTransfer                          TemporaryFileTransferType (OPC 10000-20 4.4)
          ErrorMessage, GetUpdateBehavior
        Installation                            InstallationStateMachineType (8.4.9): InstallSoftwarePackage, Resume
        Confirmation                            ConfirmationStateMachineType (8.4.10): Confirm, ConfirmationTimeout
        UpdateStatus

Types come from the DI NodeSet; this module instantiates them, binds their
methods to the ModelSlot, and mirrors the slot's state into their variables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.copy_node_util import copy_node

from edge_node.slots.slot import ModelSlot
from edge_node.slots.store import InstalledVersion
from nodesets import Namespaces
from nodesets.ids import DI, ConfirmationState, SoftwareVersionFileType
from sdk import audit
from sdk.audit_log import on_disk
from sdk.errors import ModelLineError, TypeMismatch, UsageError
from sdk.opcua import sessions
from sdk.opcua.audited import audited, record_call
from sdk.opcua.file_transfer import DEFAULT_MAX_PACKAGE_BYTES, TemporaryFileTransfer
from sdk.opcua.ids import node_id, path_id, qname, text_of
from sdk.opcua.methods import bind_method
from sdk.opcua.status import status_on_error
from sdk.opcua.users import Role, requires
from sdk.opcua.values import NO_DATE, new_instance
from sdk.opcua.writes import WriteChecks
from sdk.package.stream import Received

_log = logging.getLogger(__name__)

KEEPS_PARAMETERS = 0x1  # UpdateBehavior bit 0 (8.5.2); no WillDisconnect, RequiresPowerCycle, WillReboot


def version_kind(value: Any) -> SoftwareVersionFileType:
    """generateOptions as SoftwareVersionFileType (DI 8.5.1); Null means Pending (OPC 10000-20 4.4.4)."""
    if value is None:
        return SoftwareVersionFileType.PENDING
    if isinstance(value, int) and not isinstance(value, bool) and value in set(SoftwareVersionFileType):
        return SoftwareVersionFileType(value)
    choices = ", ".join(f"{int(k)} {k.label}" for k in SoftwareVersionFileType)
    raise UsageError(f"generateOptions {value!r} is not a SoftwareVersionFileType ({choices})")


@dataclass
class _VersionNodes:
    manufacturer: Node
    manufacturer_uri: Node
    revision: Node
    hash: Node
    release_date: Node
    patch_ids: Node


class SlotNodes:
    """The DI nodes of one slot, bound to it."""

    def __init__(self, server: Server, ns: Namespaces, slot: ModelSlot) -> None:
        self.server = server
        self.ns = ns
        self.slot = slot
        self.transfer: TemporaryFileTransfer | None = None
        self._timeout_shown = 0.0

    def _di(self, number: int) -> ua.NodeId:
        return node_id(number, self.ns.di)

    def _qn(self, name: str) -> ua.QualifiedName:
        return qname(name, self.ns.di)

    async def _child(self, node: Node, *path: str) -> Node:
        return await node.get_child([f"{self.ns.di}:{p}" if ":" not in p else p for p in path])

    async def build(
        self,
        device: Node,
        instance_ns: int,
        max_byte_string: int,
        writes: WriteChecks,
        *,
        max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
    ) -> None:
        """Create the nodes under ``device`` and bind them to the slot."""
        server, slot = self.server, self.slot
        base = text_of(path_id(device.nodeid, slot.name))
        self.component = await new_instance(
            device,
            server.get_node(self._di(DI.SOFTWARE_TYPE)),
            nodeid=node_id(base, instance_ns),
            bname=qname(slot.name, instance_ns),
            optional=False,
        )
        update = await new_instance(
            self.component,
            server.get_node(self._di(DI.SOFTWARE_UPDATE_TYPE)),
            nodeid=node_id(f"{base}.SoftwareUpdate", instance_ns),
            bname=self._qn("SoftwareUpdate"),
            optional=False,
        )
        # An AddIn hangs off its owner by HasAddIn (OPC 10000-3 / DI 8.4.1), not HasComponent.
        await self.component.delete_reference(update, ua.ObjectIds.HasComponent, forward=True, bidirectional=True)
        await self.component.add_reference(update, ua.ObjectIds.HasAddIn, forward=True, bidirectional=True)

        loading = await self._add(
            update, DI.CACHED_LOADING_TYPE, f"{base}.SoftwareUpdate.Loading", "Loading", instance_ns
        )
        await self._add(
            loading,
            DI.SOFTWARE_VERSION_TYPE,
            f"{base}.SoftwareUpdate.Loading.FallbackVersion",
            "FallbackVersion",
            instance_ns,
        )
        self.versions = {
            kind: await self._version_nodes(loading, kind.label + "Version") for kind in SoftwareVersionFileType
        }
        self.error_message = await self._child(loading, "ErrorMessage")
        installation = await self._add(
            update,
            DI.INSTALLATION_STATE_MACHINE_TYPE,
            f"{base}.SoftwareUpdate.Installation",
            "Installation",
            instance_ns,
        )
        install_method = await copy_node(
            installation,
            server.get_node(self._di(DI.INSTALL_SOFTWARE_PACKAGE)),
            nodeid=node_id(f"{base}.SoftwareUpdate.Installation.InstallSoftwarePackage", instance_ns),
        )
        self.percent = await installation.add_variable(
            node_id(f"{base}.SoftwareUpdate.Installation.PercentComplete", instance_ns),
            self._qn("PercentComplete"),
            ua.Variant(0, ua.VariantType.Byte),
        )
        self.install_state = await installation.get_child("0:CurrentState")
        confirmation = await self._add(
            update,
            DI.CONFIRMATION_STATE_MACHINE_TYPE,
            f"{base}.SoftwareUpdate.Confirmation",
            "Confirmation",
            instance_ns,
        )
        self.confirm_state = await confirmation.get_child("0:CurrentState")
        self.confirmation_timeout = await self._child(confirmation, "ConfirmationTimeout")
        await self.confirmation_timeout.set_writable(True)
        # One Duration in milliseconds (DI 8.4.10); asyncua would otherwise let an array be written into it.
        await self.confirmation_timeout.write_attribute(
            ua.AttributeIds.ValueRank, ua.DataValue(ua.Variant(int(ua.ValueRank.Scalar), ua.VariantType.Int32))
        )
        # Writable for the session asyncua lets write; the write check lets only Engineers through.
        writes.add(self.confirmation_timeout.nodeid, self._check_confirmation_timeout, Role.ENGINEER)
        self.update_status = await update.add_variable(
            node_id(f"{base}.SoftwareUpdate.UpdateStatus", instance_ns),
            self._qn("UpdateStatus"),
            ua.Variant(ua.LocalizedText(""), ua.VariantType.LocalizedText),
        )

        await bind_method(server, install_method[0], self._install)
        await bind_method(server, await self._child(installation, "Resume"), self._resume)
        await bind_method(server, await self._child(confirmation, "Confirm"), self._confirm)
        await bind_method(server, await self._child(loading, "GetUpdateBehavior"), self._get_update_behavior)
        self.transfer = await TemporaryFileTransfer(
            server,
            await self._child(loading, "FileTransfer"),
            slot.store.root / "transfers",
            commit=self._commit,
            read_source=self._read_source,
            check_options=version_kind,
            max_byte_string=max_byte_string,
            max_package_bytes=max_package_bytes,
            mime_type="application/vnd.modelline.package+zip",
            role=Role.ENGINEER,
            reserve_bytes=slot.reserve_bytes,
            free_space=lambda folder: slot.free_space(folder),  # the slot's, even if replaced later
            on_refused=self._transfer_refused,
            follow_zip=True,  # the package's entries hashed (the model copied aside) as they arrive
        ).bind()
        self._timeout_shown = slot.state.confirmation_timeout_s * 1000.0
        await self.confirmation_timeout.write_value(ua.Variant(self._timeout_shown, ua.VariantType.Double))
        slot.listen(self._refresh)

    async def _add(self, parent: Node, type_number: int, child_id: str, name: str, ns_index: int) -> Node:
        return await new_instance(
            parent,
            self.server.get_node(self._di(type_number)),
            nodeid=node_id(child_id, ns_index),
            bname=self._qn(name),
            optional=False,
        )

    async def _version_nodes(self, loading: Node, name: str) -> _VersionNodes:
        version = await self._child(loading, name)
        base = text_of(version.nodeid)
        ns_index = version.nodeid.NamespaceIndex

        async def prop(pname: str, value: ua.Variant) -> Node:
            return await version.add_property(node_id(f"{base}.{pname}", ns_index), self._qn(pname), value)

        return _VersionNodes(
            manufacturer=await self._child(version, "Manufacturer"),
            manufacturer_uri=await self._child(version, "ManufacturerUri"),
            revision=await self._child(version, "SoftwareRevision"),
            hash=await prop("Hash", ua.Variant(b"", ua.VariantType.ByteString)),
            release_date=await prop("ReleaseDate", ua.Variant(NO_DATE, ua.VariantType.DateTime)),
            patch_ids=await prop("PatchIdentifiers", ua.Variant([], ua.VariantType.String)),
        )

    # --- state mirror ---------------------------------------------------------------------------

    async def _refresh(self, slot: ModelSlot) -> None:
        for kind, nodes in self.versions.items():
            await self._write_version(nodes, slot.version(kind))
        current = slot.state.current
        await (await self._child(self.component, "Model")).write_value(
            ua.LocalizedText(current.name if current else "")
        )
        await (await self._child(self.component, "SoftwareRevision")).write_value(current.version if current else "")
        await (await self._child(self.component, "Manufacturer")).write_value(
            ua.LocalizedText(f"signed by {current.signer}" if current else "")
        )
        await self._state(self.install_state, slot.install_state.label, self._di(slot.install_state.node))
        waiting = (
            ConfirmationState.WAITING_FOR_CONFIRM
            if slot.awaiting_confirmation
            else ConfirmationState.NOT_WAITING_FOR_CONFIRM
        )
        await self._state(self.confirm_state, waiting.label, self._di(waiting.node))
        await self.percent.write_value(ua.Variant(slot.percent_complete, ua.VariantType.Byte))
        await self.update_status.write_value(ua.LocalizedText(slot.update_status))
        timeout_ms = slot.state.confirmation_timeout_s * 1000.0
        if timeout_ms != self._timeout_shown:  # the saved value, once loaded at start (build runs before that)
            await self.confirmation_timeout.write_value(ua.Variant(timeout_ms, ua.VariantType.Double))
            self._timeout_shown = timeout_ms

    async def _write_version(self, nodes: _VersionNodes, version: InstalledVersion | None) -> None:
        # PendingVersion/CurrentVersion/FallbackVersion (DI 8.4.11) from the package's metadata (DI 8.7.3) when a
        # DI package carried one: ManufacturerUri, Manufacturer, SoftwareRevision, PatchIdentifiers.
        await nodes.manufacturer.write_value(
            ua.LocalizedText((version.manufacturer or version.name) if version else "")
        )
        await nodes.manufacturer_uri.write_value(version.manufacturer_uri if version else "")
        await nodes.revision.write_value(version.version if version else "")
        await nodes.hash.write_value(
            ua.Variant(bytes.fromhex(version.sha256) if version else b"", ua.VariantType.ByteString)
        )
        await nodes.patch_ids.write_value(
            ua.Variant(list(version.patch_identifiers) if version else [], ua.VariantType.String)
        )
        # ReleaseDate (DI 8.4.11): the package's creation time from its manifest; NO_DATE while the slot is empty.
        await nodes.release_date.write_value(
            ua.Variant(version.created if version else NO_DATE, ua.VariantType.DateTime)
        )

    async def _state(self, current_state: Node, name: str, state_id: ua.NodeId) -> None:
        await current_state.write_value(ua.LocalizedText(name))
        await (await current_state.get_child("0:Id")).write_value(ua.Variant(state_id, ua.VariantType.NodeId))

    async def _check_confirmation_timeout(self, value: ua.Variant) -> None:
        """Before a client's Write is applied: a scalar Double the slot state can keep (ms -> s)."""
        if value.VariantType != ua.VariantType.Double or value.is_array or value.Value is None:
            raise TypeMismatch(f"ConfirmationTimeout is one Double (milliseconds), not {value.VariantType.name}")
        self.slot.check_confirmation_timeout(float(value.Value) / 1000.0)

    async def confirmation_timeout_written(self) -> None:
        """A client wrote ConfirmationTimeout (milliseconds): keep it for the next install."""
        value = float(await self.confirmation_timeout.read_value() or 0.0)
        before = self.slot.state.confirmation_timeout_s * 1000.0
        await self.slot.set_confirmation_timeout(value / 1000.0)
        self._timeout_shown = value
        record_call("confirmation timeout", "ok", target=self.slot.name, detail=f"{before:g} ms -> {value:g} ms")
        await on_disk()

    # --- transfer -------------------------------------------------------------------------------

    async def _commit(self, path: Path, kind: SoftwareVersionFileType, received: Received | None) -> None:
        # CloseAndCommit (OPC 10000-20 4.4.5): the package becomes PendingVersion once verified, in one pass
        # (``received``: its hash taken as the chunks arrived; DI 8.4.11 Hash).
        if kind is not SoftwareVersionFileType.PENDING:
            raise UsageError(f"only the Pending version can be written, not {kind.label}")
        try:
            pending = await self.slot.stage_pending(path, received)
        except Exception as exc:
            await self.error_message.write_value(ua.LocalizedText(str(exc)))
            # A package refused: the reason names the check (signature, hash, archive, untrusted key...).
            record_call("upload", "refused", target=self.slot.name, detail=f"package refused, {audit.reason_of(exc)}")
            await on_disk()
            raise
        await self.error_message.write_value(ua.LocalizedText(""))
        record_call(
            "upload",
            "ok",
            target=self.slot.name,
            detail=f"{pending.name} {pending.version} ({pending.sha256[:12]}) signed by {pending.signer}",
        )
        await on_disk()

    async def _transfer_refused(self, reason: str) -> None:
        """A transfer refused for lack of disk space: ErrorMessage and UpdateStatus say how much is missing."""
        await self.error_message.write_value(ua.LocalizedText(reason))
        record_call("upload", "refused", target=self.slot.name, detail=f"transfer refused: {reason}")
        await self.slot.report(f"transfer refused: {reason}")

    async def _read_source(self, kind: SoftwareVersionFileType) -> Path:
        return self.slot.package_file(kind)

    # --- methods --------------------------------------------------------------------------------

    @status_on_error
    @requires(Role.ENGINEER)
    async def _install(
        self, parent: ua.NodeId, uri: ua.Variant, revision: ua.Variant, patches: ua.Variant, digest: ua.Variant
    ) -> list[ua.Variant]:
        try:
            await self.slot.request_install(
                uri.Value or "",
                revision.Value or "",
                digest.Value or b"",
                who=sessions.current_who(),
                address=sessions.current_address(),
            )
        except ModelLineError as exc:  # accepted installs are recorded with their outcome (ModelSlot)
            record_call("install", "refused", target=self.slot.name, detail=f"{revision.Value}: {exc}")
            await on_disk()
            raise
        return []

    @status_on_error
    @requires(Role.OPERATOR)
    @audited("resume", lambda self: self.slot.name)
    async def _resume(self, parent: ua.NodeId) -> list[ua.Variant]:
        await self.slot.resume()
        return []

    @status_on_error
    @requires(Role.ENGINEER)
    @audited("confirm", lambda self: self.slot.name)
    async def _confirm(self, parent: ua.NodeId) -> list[ua.Variant]:
        await self.slot.confirm()
        return []

    @status_on_error
    async def _get_update_behavior(self, parent: ua.NodeId, *version: ua.Variant) -> list[ua.Variant]:
        # The same answer for every version: installing a model keeps the device's parameters.
        return [ua.Variant(KEEPS_PARAMETERS, ua.VariantType.UInt32)]
