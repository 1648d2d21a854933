"""The DI update client as a deployment drives it: every call names its step when the link fails.

A lost link becomes ConnectionLost ("connection lost during the install: ...") so that the
deployment retries; any other OPC UA answer the device gives becomes UpdateFailed with the step and
the status, so that a device that answers oddly fails its target with a reason, not the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asyncua import ua

from nodesets.ids import InstallationState, SoftwareVersionFileType
from sdk.di_client import SoftwareUpdateClient, during
from sdk.errors import UpdateFailed
from sdk.versions import VersionInfo


@asynccontextmanager
async def _step(name: str) -> AsyncIterator[None]:
    try:
        async with during(name):
            yield
    except ua.UaStatusCodeError as exc:
        raise UpdateFailed(f"{name}: the device answered {type(exc).__name__}") from None


class GuardedUpdate:
    """A SlotUpdate over SoftwareUpdateClient."""

    def __init__(self, client: SoftwareUpdateClient) -> None:
        self._su = client

    async def slot_name(self) -> str:
        """The slot's name."""
        async with _step("reading the slot"):
            return await self._su.slot_name()

    async def version(self, which: SoftwareVersionFileType) -> VersionInfo:
        """A version of the slot."""
        async with _step(f"reading the {which.label} version"):
            return await self._su.version(which)

    async def set_confirmation_timeout(self, seconds: float) -> None:
        """ConfirmationTimeout for the next install."""
        async with _step("setting the confirmation timeout"):
            await self._su.set_confirmation_timeout(seconds)

    async def transfer(self, package: Path, sha256: bytes | None = None) -> VersionInfo:
        """The package to PendingVersion."""
        async with _step("the transfer"):
            return await self._su.transfer(package, sha256=sha256)

    async def install(self, version: VersionInfo) -> str:
        """Install and wait for the result."""
        async with _step("the install"):
            return await self._su.install(version)

    async def installation_state(self) -> InstallationState:
        """Idle, Installing or Error."""
        async with _step("reading the installation state"):
            return await self._su.installation_state()

    async def wait_installed(self) -> str:
        """Wait for an install under way."""
        async with _step("the install"):
            return await self._su.wait_installed()

    async def awaiting_confirmation(self) -> bool:
        """Whether the device waits for Confirm."""
        async with _step("reading the confirmation state"):
            return await self._su.awaiting_confirmation()

    async def resume(self) -> None:
        """Leave the installation Error state."""
        async with _step("resuming the installation"):
            await self._su.resume()

    async def confirm(self) -> None:
        """Keep the installed version."""
        async with _step("the confirmation"):
            await self._su.confirm()

    async def update_status(self) -> str:
        """UpdateStatus text."""
        async with _step("reading the update status"):
            return await self._su.update_status()
