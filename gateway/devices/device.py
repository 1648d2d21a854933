"""What the Model Manager needs of an edge device, whatever carries it: the OPC UA link in
``gateway/opcua/device_link.py`` in the product, a fake in unit tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from nodesets.ids import DeviceHealth, DeviceState, InstallationState, PipelineState, SoftwareVersionFileType
from sdk.versions import VersionInfo


@dataclass
class DeviceView:
    """What the gateway last saw of a device."""

    state: DeviceState = DeviceState.OFFLINE
    last_seen: datetime | None = None
    health: DeviceHealth | None = None
    active_model: str = ""
    active_version: str = ""
    pipelines: dict[str, PipelineState] = field(default_factory=dict)
    reason: str = "not connected yet"
    # pipeline -> the Configuration (model, version, binding, change) that made its newest Good prediction
    good_configuration: dict[str, str] = field(default_factory=dict)


class SlotUpdate(Protocol):
    """The DI software update (Cached-Loading, OPC 10000-100 8.3) of one model slot.

    A lost link raises sdk.errors.ConnectionLost naming the step (the caller may retry); a refusal
    by the device raises UpdateFailed or PackageRejected with the device's reason."""

    async def slot_name(self) -> str:
        """The slot's name (its pipeline's name too)."""

    async def version(self, which: SoftwareVersionFileType) -> VersionInfo:
        """The Current, Pending or Fallback version."""

    async def set_confirmation_timeout(self, seconds: float) -> None:
        """ConfirmationTimeout for the next install; 0: none needed."""

    async def transfer(self, package: Path, sha256: bytes | None = None) -> VersionInfo:
        """Send a package (whose SHA-256 is ``sha256``, when known) to PendingVersion; the device verifies it.
        Returns the new Pending version."""

    async def install(self, version: VersionInfo) -> str:
        """Install a Pending or Fallback version and wait for the result; returns UpdateStatus."""

    async def installation_state(self) -> InstallationState:
        """Idle, Installing or Error."""

    async def wait_installed(self) -> str:
        """Wait until an install under way ends: Idle returns UpdateStatus, Error raises UpdateFailed."""

    async def awaiting_confirmation(self) -> bool:
        """Whether the installed version waits for Confirm (and reverts without it)."""

    async def resume(self) -> None:
        """Leave the installation Error state."""

    async def confirm(self) -> None:
        """Keep the installed version."""

    async def update_status(self) -> str:
        """UpdateStatus: the device's word on its last install or revert (may be from an earlier one)."""


class Device(Protocol):
    """A registered edge device, kept in view by a running ``run()``."""

    device_id: str
    endpoint: str
    view: DeviceView
    listeners: list[Callable[[Device], Awaitable[None]]]

    @property
    def online(self) -> bool:
        """Connected now."""

    async def wait_online(self, within_s: float | None = None) -> bool:
        """Wait until connected; False when ``within_s`` passes first."""

    def update_session(self, slot: str | None = None) -> AbstractAsyncContextManager[SlotUpdate]:
        """A session for updating a slot (the only one when None), closed at the end of the ``async with``."""

    async def set_binding(self, slot: str, binding_json: str) -> None:
        """Bind a slot's pipeline inputs."""

    async def binding(self, slot: str) -> str:
        """A slot's pipeline binding as JSON; empty when unbound."""

    async def configuration(self, slot: str) -> str:
        """A slot's pipeline Configuration now: what its next Good prediction will be credited to."""

    def refresh(self) -> None:
        """Re-read what the device offers (after an install changed its outputs)."""

    async def run(self) -> None:
        """Stay connected, forever."""


DeviceFactory = Callable[[str, str], Device]
"""Makes the device for an id and an endpoint."""
