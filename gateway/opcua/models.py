"""``ModelManager/Models``: one ModelType per model name, one ModelVersionType per stored version.

Packages come in through ``ModelManager/Upload`` (TemporaryFileTransferType,
OPC 10000-20 4.4): CloseAndCommit hands the file to the repository, which
verifies it before storing; a refused package answers with the reason's
StatusCode, leaves nothing behind, and ``ModelManager/UploadError`` says why in
one line. Each version's ``Package`` is a read-only FileType (OPC 10000-20 4.2)
serving the stored bytes to Engineers only.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua

from gateway.models.repository import PackageRepository
from gateway.store.base import ModelVersionRecord
from nodesets import Namespaces
from nodesets.ids import ModelLine
from sdk import audit
from sdk.audit_log import on_disk
from sdk.errors import ModelLineError
from sdk.opcua import sessions
from sdk.opcua.file_transfer import DEFAULT_MAX_PACKAGE_BYTES, TemporaryFileTransfer
from sdk.opcua.filetype import FileNode
from sdk.opcua.ids import data_value, delete_subtree, instantiate_in_place, node_id, path_id, qname
from sdk.opcua.templates import from_template
from sdk.opcua.users import Role
from sdk.opcua.values import new_instance, write_own
from sdk.package.manifest import Range, TensorSpec
from sdk.package.stream import Received

_log = logging.getLogger(__name__)

PACKAGE_MIME = "application/vnd.modelline.package+zip"


def _range(r: Range) -> str:
    if r.min is None and r.max is None:
        return ""
    return f" {'' if r.min is None else f'{r.min:g}'}..{'' if r.max is None else f'{r.max:g}'}"


def describe_ports(tensors: list[TensorSpec]) -> list[str]:
    """One line per input feature or output: 'name element_type [units] min..max'."""
    lines = []
    for t in tensors:
        for f in t.features or []:
            lines.append(
                f"{t.name}.{f.name} {t.element_type.value}" + (f" [{f.units}]" if f.units else "") + _range(f.valid)
            )
        if not t.features:
            lines.append(f"{t.name} {t.element_type.value}" + (f" [{t.units}]" if t.units else "") + _range(t.valid))
    return lines


class ModelNodes:
    """The Models folder and the Upload object of a ModelManager, bound to the repository."""

    def __init__(
        self,
        server: Server,
        ns: Namespaces,
        manager: Node,
        repository: PackageRepository,
        work_dir: Path,
        max_byte_string: int,
        max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
    ) -> None:
        self.server = server
        self.ns = ns
        self.manager = manager
        self.repository = repository
        self.work_dir = work_dir
        self.max_byte_string = max_byte_string
        self.max_package_bytes = max_package_bytes
        self._models: dict[str, Node] = {}
        self._versions: dict[tuple[str, str], FileNode] = {}
        self._version_nodes: dict[tuple[str, str], Node] = {}

    async def bind(self) -> ModelNodes:
        """Show every stored version and accept uploads."""
        self.folder = await self.manager.get_child(f"{self.ns.modelline}:Models")
        self.upload_error = await self.manager.get_child(f"{self.ns.modelline}:UploadError")
        await self.upload_error.write_value(ua.Variant("", ua.VariantType.String))
        for record in await self.repository.records():
            await self.add_version(record)
        upload = await instantiate_in_place(
            await self.manager.get_child(f"{self.ns.modelline}:Upload"),
            node_id(ua.ObjectIds.TemporaryFileTransferType),
            optional=False,  # no <TransferState> placeholder: transfers complete within the call
        )
        self.upload = await TemporaryFileTransfer(
            self.server,
            upload,
            self.work_dir,
            commit=self._commit,
            max_byte_string=self.max_byte_string,
            max_package_bytes=self.max_package_bytes,
            mime_type=PACKAGE_MIME,
            role=Role.ENGINEER,
            follow_zip=True,  # the package's entries hashed (the model copied aside) as they arrive
        ).bind()
        return self

    async def _commit(self, path: Path, options: Any, received: Received | None) -> None:
        # CloseAndCommit (OPC 10000-20 4.4.5): ``received`` is the upload's hash, taken as its chunks arrived.
        user = sessions.current_user()
        actor = getattr(user, "name", None) or "anonymous"
        try:
            await self.store_package(path, actor=actor, received=received)
        except ModelLineError as exc:  # a StatusCode cannot say why: UploadError does, as DI's ErrorMessage
            _log.warning("upload by %s refused: %s", actor, exc)
            audit.record("upload", "refused", detail=f"package refused, {audit.reason_of(exc)}")
            await on_disk()
            await self.upload_error.write_value(ua.Variant(str(exc), ua.VariantType.String))
            raise
        await self.upload_error.write_value(ua.Variant("", ua.VariantType.String))
        await on_disk()  # answered once the upload's audit record is on disk

    async def store_package(
        self, path: Path, actor: str, received: Received | None = None
    ) -> tuple[ModelVersionRecord, bool]:
        """Verify and keep a package, its nodes made before it is stored (and removed if storing fails)."""
        shown: list[ModelVersionRecord] = []

        async def show(record: ModelVersionRecord) -> None:
            await self.add_version(record)
            shown.append(record)

        try:
            return await self.repository.add(path, actor=actor, before_store=show, received=received)
        except BaseException:
            for record in shown:
                await self.remove_version(record)
            raise

    async def add_version(self, record: ModelVersionRecord) -> None:
        """``Models/<name>/<version>`` with its variables and Package file."""
        manifest = record.manifest  # validated with the record
        ns_index = self.folder.nodeid.NamespaceIndex
        model = self._models.get(record.name)
        if model is None:
            model = await new_instance(
                self.folder,
                self.server.get_node(node_id(ModelLine.MODEL_TYPE, self.ns.modelline)),
                nodeid=path_id(self.folder.nodeid, record.name),
                bname=qname(record.name, ns_index),
            )
            self._models[record.name] = model
        # The model's children have the ids <model>.<browse name>, as its versions' (see below).
        await write_own(self.server, path_id(model.nodeid, "Description"), ua.Variant(manifest.description))
        version_id, version_name = path_id(model.nodeid, record.version), qname(record.version, ns_index)

        async def build() -> None:
            made = await new_instance(
                model,
                self.server.get_node(node_id(ModelLine.MODEL_VERSION_TYPE, self.ns.modelline)),
                nodeid=version_id,
                bname=version_name,
            )
            await instantiate_in_place(
                await made.get_child(f"{self.ns.modelline}:Package"), node_id(ua.ObjectIds.FileType)
            )

        # The version with its Package made a full FileType once per server, then copied (sdk/opcua/templates.py).
        version = await from_template(model, version_id, version_name, "ModelVersion with its Package", build)
        values = {
            "Version": ua.Variant(record.version, ua.VariantType.String),
            "Sha256": ua.Variant(record.sha256, ua.VariantType.String),
            "Signer": ua.Variant(record.signer, ua.VariantType.String),
            "CreatedAt": ua.Variant(record.created, ua.VariantType.DateTime),
            "Inputs": ua.Variant(describe_ports(manifest.inputs), ua.VariantType.String),
            "Outputs": ua.Variant(describe_ports(manifest.outputs), ua.VariantType.String),
        }
        # An instance's children have the ids <instance>.<browse name> (asyncua's instantiation of a string id,
        # kept by the template copies): written straight, without a TranslateBrowsePath each (1,000s at start).
        now = datetime.now(UTC)
        for name, value in values.items():
            await self.server.write_attribute_value(path_id(version.nodeid, name), data_value(value, 0, now, now))
        package = self.server.get_node(path_id(version.nodeid, "Package"))
        self._version_nodes[(record.name, record.version)] = version
        self._versions[(record.name, record.version)] = await FileNode(
            self.server,
            package,
            self.repository.path(record),
            writable=False,
            max_byte_string=self.max_byte_string,
            mime_type=PACKAGE_MIME,
            role=Role.ENGINEER,  # a stored model is the plant's intellectual property
        ).bind()
        _log.info("model version %s %s in the address space", record.name, record.version)

    async def remove_version(self, record: ModelVersionRecord) -> None:
        """Take ``Models/<name>/<version>`` out again (its package could not be stored)."""
        file = self._versions.pop((record.name, record.version), None)
        if file is not None:
            await file.release()
        node = self._version_nodes.pop((record.name, record.version), None)
        if node is not None:
            await delete_subtree(node)

    async def release(self) -> None:
        """Close every open handle and stop listening for session ends (before the server stops): the
        process-wide session listeners would otherwise keep this server, and all it holds, alive."""
        await self.upload.release()
        for file in self._versions.values():
            await file.release()

    @property
    def count(self) -> int:
        """How many versions are shown."""
        return len(self._versions)

    def describe(self) -> str:
        """The versions shown, for logs."""
        return json.dumps(sorted(f"{n} {v}" for n, v in self._versions))
