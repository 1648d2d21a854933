"""A DI software update client (OPC 10000-100 section 8.3, Cached-Loading) for any compliant device.

Transfer a package to PendingVersion with the FileTransfer object
(GenerateFileForWrite, Write, CloseAndCommit), install it with
InstallSoftwarePackage and the package hash, wait for the Installation state
machine to come back to Idle (or report Error with UpdateStatus), then Confirm.
Nothing here is specific to ModelLine's edge node except the optional
SetBinding call on its pipelines.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.common.subscription import DataChangeEvent
from asyncua.ua import uaerrors

from nodesets.ids import DI_URI, MODELLINE_URI, ConfirmationState, InstallationState, SoftwareVersionFileType
from sdk.errors import (
    BAD_NOT_FOUND,
    ConnectionLost,
    DiskFull,
    ModelLineError,
    NotFound,
    PackageRejected,
    Unreachable,
    UpdateFailed,
    UsageError,
)
from sdk.file_client import upload
from sdk.opcua.client import refused_by_server
from sdk.opcua.connect import CLIENT_URI, default_pki_dir, secure_client
from sdk.versions import VersionInfo

Progress = Callable[[int, int | None], None]


# Status codes that say the link failed, not the request: the step may be tried again (OPC 10000-4 7.39).
_LINK_FAILURES = {
    ua.StatusCodes.BadConnectionClosed,
    ua.StatusCodes.BadSecureChannelClosed,
    ua.StatusCodes.BadSecureChannelIdInvalid,
    ua.StatusCodes.BadSessionClosed,
    ua.StatusCodes.BadSessionIdInvalid,
    ua.StatusCodes.BadSessionNotActivated,
    ua.StatusCodes.BadTimeout,
    ua.StatusCodes.BadRequestTimeout,
    ua.StatusCodes.BadServerNotConnected,
    ua.StatusCodes.BadNotConnected,
    ua.StatusCodes.BadCommunicationError,
    ua.StatusCodes.BadNoCommunication,
    ua.StatusCodes.BadDisconnect,
    ua.StatusCodes.BadShutdown,
    ua.StatusCodes.BadServerHalted,
    ua.StatusCodes.BadTcpInternalError,
}


def _sha256(path: Path) -> bytes:
    """SHA-256 of a file, read in blocks (call it in a worker thread)."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").digest()


def _status(exc: ua.UaStatusCodeError) -> int:
    return int(exc.code)


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) and str(exc) != type(exc).__name__ else type(exc).__name__


@asynccontextmanager
async def during(step: str) -> AsyncIterator[None]:
    """Turn a lost link inside ``step`` into ConnectionLost naming the step and the cause (the caller may retry);
    a refusal by the device itself passes through."""
    try:
        yield
    except ModelLineError:
        raise
    except ua.UaStatusCodeError as exc:
        if _status(exc) in _LINK_FAILURES:
            raise ConnectionLost(f"connection lost during {step}: {_cause(exc)}") from None
        raise
    except (ConnectionError, OSError, TimeoutError) as exc:
        raise ConnectionLost(f"connection lost during {step}: {_cause(exc)}") from None


class SoftwareUpdateClient:
    """The SoftwareUpdate AddIn of one slot of one device."""

    def __init__(self, client: Client, update: Node, di: int) -> None:
        self.client = client
        self.update = update
        self.di = di

    @classmethod
    async def find(cls, client: Client, device: str | None = None, slot: str | None = None) -> SoftwareUpdateClient:
        """The slot's SoftwareUpdate under ``DeviceSet``; device and slot may be left out when there is one."""
        di = await client.get_namespace_index(DI_URI)
        device_set = await client.nodes.objects.get_child(f"{di}:DeviceSet")
        updatable: dict[str, dict[str, Node]] = {}  # device -> slot -> SoftwareUpdate
        for device_node in await device_set.get_children(nodeclassmask=ua.NodeClass.Object):
            slots: dict[str, Node] = {}
            for component in await device_node.get_children(nodeclassmask=ua.NodeClass.Object):
                add_ins = await component.get_referenced_nodes(
                    refs=ua.ObjectIds.HasAddIn, direction=ua.BrowseDirection.Forward
                )
                for add_in in add_ins:
                    if (await add_in.read_browse_name()).Name == "SoftwareUpdate":
                        slots[str((await component.read_browse_name()).Name)] = add_in
            if slots:
                updatable[str((await device_node.read_browse_name()).Name)] = slots
        device_name = _pick_name(updatable, device, "device", "DeviceSet")
        update = updatable[device_name][_pick_name(updatable[device_name], slot, "model slot", f"device {device_name}")]
        return cls(client, update, di)

    async def slot_name(self) -> str:
        """The name of the slot (the component that owns this SoftwareUpdate AddIn)."""
        owners = await self.update.get_referenced_nodes(
            refs=ua.ObjectIds.HasAddIn, direction=ua.BrowseDirection.Inverse
        )
        return str((await owners[0].read_browse_name()).Name)

    async def _node(self, *path: str) -> Node:
        return await self.update.get_child([f"{self.di}:{p}" for p in path])

    async def _method(self, parent: Node, name: str, *args: ua.Variant) -> Any:
        return await parent.call_method((await parent.get_child(f"{self.di}:{name}")).nodeid, *args)

    async def version(self, which: SoftwareVersionFileType = SoftwareVersionFileType.CURRENT) -> VersionInfo:
        """Current, Pending or Fallback version as the device reports it."""
        node = await self._node("Loading", f"{which.label}Version")
        uri = await (await node.get_child(f"{self.di}:ManufacturerUri")).read_value()
        revision = await (await node.get_child(f"{self.di}:SoftwareRevision")).read_value()
        try:
            digest = await (await node.get_child(f"{self.di}:Hash")).read_value() or b""
        except ua.UaStatusCodeError:
            digest = b""
        return VersionInfo(uri or "", revision or "", digest)

    async def update_status(self) -> str:
        """UpdateStatus text."""
        value = await (await self._node("UpdateStatus")).read_value()
        return str(getattr(value, "Text", value) or "")

    async def installation_state(self) -> InstallationState:
        """Installation CurrentState: Idle, Installing or Error."""
        value = await (await self._node("Installation")).get_child("0:CurrentState")
        text = await value.read_value()
        return InstallationState.from_label(str(getattr(text, "Text", text) or ""))

    async def awaiting_confirmation(self) -> bool:
        """Whether the Confirmation state machine waits for Confirm (the device reverts unless it comes in time)."""
        value = await (await self._node("Confirmation")).get_child("0:CurrentState")
        text = await value.read_value()
        return ConfirmationState.from_label(str(getattr(text, "Text", text) or "")) is (
            ConfirmationState.WAITING_FOR_CONFIRM
        )

    async def transfer(
        self, package: Path, progress: Progress | None = None, *, sha256: bytes | None = None
    ) -> VersionInfo:
        """Write the package to PendingVersion; the device verifies it on CloseAndCommit. ``sha256``: the
        package's hash when the caller knows it (a gateway's store), else it is computed from the file."""
        transfer = await self._node("Loading", "FileTransfer")
        try:
            await upload(
                self.client,
                transfer,
                package,  # streamed from the file: a wave of large packages is not held in memory
                ua.Variant(int(SoftwareVersionFileType.PENDING), ua.VariantType.Int32),
                progress,
            )
        except ua.UaStatusCodeError as exc:
            if _status(exc) in _LINK_FAILURES:
                raise ConnectionLost(f"connection lost during the transfer: {_cause(exc)}") from None
            if _status(exc) == ua.StatusCodes.BadUserAccessDenied:
                raise UpdateFailed(f"the device refused the transfer ({type(exc).__name__}): {_hint(exc)}") from None
            # ErrorMessage is set by the refusal of this very transfer (and cleared by a good one), unlike
            # UpdateStatus, which may still tell of an earlier install.
            reason = await (await self._node("Loading", "ErrorMessage")).read_value()
            text = getattr(reason, "Text", None) or type(exc).__name__
            if _status(exc) == DiskFull.status:
                raise DiskFull(f"the device has no disk space for the package: {text}") from None
            raise PackageRejected(f"the device rejected the package ({type(exc).__name__}): {text}") from None
        except (ConnectionError, OSError, TimeoutError) as exc:
            raise ConnectionLost(f"connection lost during the transfer: {_cause(exc)}") from None
        pending = await self.version(SoftwareVersionFileType.PENDING)
        # Off the loop: 100 MB take about 0.1 s to hash.
        sent = sha256 if sha256 is not None else await asyncio.to_thread(_sha256, package)
        if pending.hash and pending.hash != sent:
            raise UpdateFailed("PendingVersion does not show the package that was sent (another client wrote one?)")
        return pending

    async def set_confirmation_timeout(self, seconds: float) -> None:
        """ConfirmationTimeout for the next install; 0 means no confirmation needed."""
        node = await self._node("Confirmation", "ConfirmationTimeout")
        try:
            await node.write_value(ua.DataValue(ua.Variant(seconds * 1000.0, ua.VariantType.Double)))
        except ua.UaStatusCodeError as exc:
            raise UpdateFailed(f"the device refused ConfirmationTimeout ({type(exc).__name__}): {_hint(exc)}") from None

    async def install(self, version: VersionInfo, timeout_s: float = 120.0, poll_s: float = 0.1) -> str:
        """InstallSoftwarePackage with the hash; waits for Idle (returns UpdateStatus) or Error (raises)."""
        installation = await self._node("Installation")
        try:
            await self._method(
                installation,
                "InstallSoftwarePackage",
                ua.Variant(version.manufacturer_uri, ua.VariantType.String),
                ua.Variant(version.revision, ua.VariantType.String),
                ua.Variant([], ua.VariantType.String),
                ua.Variant(version.hash, ua.VariantType.ByteString),
            )
        except ua.UaStatusCodeError as exc:
            if _status(exc) == BAD_NOT_FOUND:
                raise NotFound(f"the device has no Pending or Fallback version {version.revision}") from None
            raise UpdateFailed(f"InstallSoftwarePackage refused: {type(exc).__name__}") from None
        return await self.wait_installed(timeout_s, poll_s)

    async def wait_installed(self, timeout_s: float = 120.0, poll_s: float = 0.1) -> str:
        """Wait until the Installation state machine leaves Installing: Idle returns UpdateStatus, Error raises."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            state = await self.installation_state()
            if state is InstallationState.IDLE:
                return await self.update_status()
            if state is InstallationState.ERROR:
                raise UpdateFailed(await self.update_status() or "installation failed")
            if asyncio.get_running_loop().time() > deadline:
                raise UpdateFailed(f"installation still {state.label} after {timeout_s:g} s")
            await asyncio.sleep(poll_s)

    async def confirm(self) -> None:
        """Confirm the installed version."""
        try:
            await self._method(await self._node("Confirmation"), "Confirm")
        except ua.UaStatusCodeError as exc:
            raise UpdateFailed(f"Confirm refused: {type(exc).__name__}") from None

    async def resume(self) -> None:
        """Resume after an installation Error."""
        await self._method(await self._node("Installation"), "Resume")


async def _pipeline(client: Client, pipeline: str) -> tuple[Node, int]:
    """``InferenceServer/Pipelines/<pipeline>`` of a ModelLine edge node, and ModelLine's namespace index."""
    ml = await client.get_namespace_index(MODELLINE_URI)
    server = await client.nodes.objects.get_child(f"{ml}:InferenceServer")
    folder = await server.get_child(f"{ml}:Pipelines")
    pipelines = {str((await n.read_browse_name()).Name): n for n in await folder.get_children()}
    return pipelines[_pick_name(pipelines, pipeline, "pipeline", "InferenceServer/Pipelines")], ml


async def pipeline_text(client: Client, pipeline: str, variable: str) -> str:
    """A String variable of ``InferenceServer/Pipelines/<pipeline>`` (Binding, Configuration, ...)."""
    node, ml = await _pipeline(client, pipeline)
    try:
        value = await (await node.get_child(f"{ml}:{variable}")).read_value()
    except ua.UaStatusCodeError as exc:
        raise UpdateFailed(f"pipeline {pipeline} has no readable {variable} ({type(exc).__name__})") from None
    return str(value or "")


async def pipeline_binding(client: Client, pipeline: str) -> str:
    """The binding JSON the pipeline uses now ("" when it has none)."""
    return await pipeline_text(client, pipeline, "Binding")


async def wait_for_good_prediction(client: Client, pipeline: str, timeout_s: float) -> str:
    """After an install: wait up to ``timeout_s`` for an output of the pipeline to hold a Good value; "" when
    one did, else the outputs' status and the pipeline's StateReason in a few words.

    Call it once the install has reported Idle: the edge node swaps models before that and runs the new
    one on the latest inputs at once, so the value an output holds from then on is the new model's (a
    clock comparison would not do: the server's CurrentTime advances once a second).
    """
    node, ml = await _pipeline(client, pipeline)
    outputs = await (await node.get_child(f"{ml}:Outputs")).get_children()
    if outputs:
        sub = await client.create_subscription(50, None, queue_maxsize=256)
        async with sub:
            await sub.subscribe_data_change(outputs)
            deadline = asyncio.get_running_loop().time() + timeout_s
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                event = await sub.next_event(timeout=left)
                if isinstance(event, DataChangeEvent) and _good(event.data.monitored_item.Value):
                    return ""
    reason = str(await (await node.get_child(f"{ml}:StateReason")).read_value() or "")
    statuses = []
    for output in outputs:
        dv = await output.read_data_value(raise_on_bad_status=False)
        status = dv.StatusCode.name if dv.StatusCode is not None else "Good"
        statuses.append(f"{(await output.read_browse_name()).Name} {status}")
    return "; ".join(filter(None, [", ".join(statuses), reason])) or "no outputs"


def _good(value: ua.DataValue) -> bool:
    return (
        value.Value is not None
        and value.Value.Value is not None
        and (value.StatusCode is None or value.StatusCode.is_good())
    )


async def set_binding(client: Client, pipeline: str, binding_json: str) -> None:
    """Call SetBinding on ``InferenceServer/Pipelines/<pipeline>`` of a ModelLine edge node."""
    node, ml = await _pipeline(client, pipeline)
    try:
        await node.call_method(
            (await node.get_child(f"{ml}:SetBinding")).nodeid, ua.Variant(binding_json, ua.VariantType.String)
        )
    except ua.UaStatusCodeError as exc:
        raise UsageError(f"the edge node refused the binding ({type(exc).__name__})") from None


def _hint(exc: ua.UaStatusCodeError) -> str:
    if _status(exc) == ua.StatusCodes.BadUserAccessDenied:
        return "log in as a user with the Engineer role (--user)"
    return str(exc)


def _pick_name(options: dict[str, Any], wanted: str | None, what: str, where: str) -> str:
    if wanted is not None:
        if wanted not in options:
            raise NotFound(f"no {what} {wanted!r} in {where}; there are: {', '.join(sorted(options)) or 'none'}")
        return wanted
    if len(options) != 1:
        listed = ", ".join(sorted(options)) or "none"
        raise UsageError(f"{where} has {len(options)} {what}s ({listed}): name one")
    return next(iter(options))


async def connect(
    url: str,
    user: str | None = None,
    password: str | None = None,
    request_timeout_s: float = 10.0,
    *,
    pki_dir: Path | None = None,
    application_uri: str = CLIENT_URI,
    name: str = "ModelLine CLI",
    certificate_identity: bool = False,
) -> Client:
    """A connected client over the strongest secure endpoint (sdk.opcua.connect) with the application
    certificate in ``pki_dir`` (default: the CLI's, ``default_pki_dir()``), logged in when a user is given
    (or with that certificate as X509 identity), or a one-line error saying why not."""
    pki = pki_dir or default_pki_dir()
    try:
        client = await secure_client(
            url,
            pki,
            application_uri=application_uri,
            name=name,
            timeout_s=request_timeout_s,
            user=user,
            password=password,
            certificate_identity=certificate_identity,
        )
        await client.connect()
    except (uaerrors.BadIdentityTokenRejected, uaerrors.BadIdentityTokenInvalid, uaerrors.BadUserAccessDenied):
        raise UsageError(
            f"{url} refused the login" + (f" of user {user!r}" if user else " of anonymous clients")
        ) from None
    except uaerrors.BadCertificateUntrusted:
        raise UsageError(refused_by_server(client)) from None
    except (
        uaerrors.BadCertificateTimeInvalid,
        uaerrors.BadCertificateUriInvalid,
        uaerrors.BadCertificateRevoked,
    ) as exc:
        raise UsageError(f"{url} refused this client's certificate {pki / 'own' / 'cert.der'}: {exc}") from None
    except (OSError, TimeoutError, ua.UaError) as exc:
        raise Unreachable(f"cannot connect to {url}: {exc or type(exc).__name__}") from None
    return client
