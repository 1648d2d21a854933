"""Registered edge devices: their records in the store and their links, one running task each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.devices.link import DeviceLink, Listener, PredictionListener
from gateway.store.base import AuditEntry, DeviceRecord, Store
from sdk.errors import BAD_INVALID_ARGUMENT, BAD_NOT_FOUND
from sdk.opcua.status import StatusError
from sdk.package.manifest import check_name

_log = logging.getLogger(__name__)


class DeviceRegistry:
    """Devices by id; ``run()`` keeps each one's link alive."""

    def __init__(
        self,
        store: Store,
        *,
        user: str | None = None,
        password: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._user, self._password = user, password
        self._clock = clock
        self.links: dict[str, DeviceLink] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self.listeners: list[Listener] = []
        self.prediction_listeners: list[PredictionListener] = []
        self._ready = asyncio.Event()

    def get(self, device_id: str) -> DeviceLink:
        """The link of a registered device; Bad_NotFound otherwise."""
        link = self.links.get(device_id)
        if link is None:
            raise StatusError(BAD_NOT_FOUND, f"no device {device_id!r} is registered (RegisterDevice first)")
        return link

    async def load(self) -> None:
        """Create links for every stored device (started by ``run``)."""
        for record in await self._store.devices():
            self._add_link(record.id, record.endpoint)

    def _add_link(self, device_id: str, endpoint: str) -> DeviceLink:
        link = DeviceLink(device_id, endpoint, user=self._user, password=self._password)
        link.listeners.extend(self.listeners)
        link.prediction_listeners.extend(self.prediction_listeners)
        self.links[device_id] = link
        if self._group is not None:
            self._tasks[device_id] = self._group.create_task(link.run(), name=f"device {device_id}")
        return link

    async def register(self, device_id: str, endpoint: str, actor: str = "") -> DeviceLink:
        """Add a device or move it to a new endpoint; saved before it is answered."""
        try:
            check_name(device_id, "device id")
        except ValueError as exc:
            raise StatusError(BAD_INVALID_ARGUMENT, str(exc)) from None
        if not endpoint.startswith("opc.tcp://"):
            raise StatusError(BAD_INVALID_ARGUMENT, f"endpoint {endpoint!r} must be an opc.tcp:// URL")
        existing = self.links.get(device_id)
        if existing is not None and existing.endpoint == endpoint:
            return existing
        now = self._clock()
        await self._store.put_device(DeviceRecord(id=device_id, endpoint=endpoint, registered_at=now))
        await self._store.audit(
            AuditEntry(at=now, actor=actor, action="register device", detail=f"{device_id} {endpoint}")
        )
        if existing is not None:
            task = self._tasks.pop(device_id, None)
            if task is not None:
                task.cancel()
        _log.info("device %s registered at %s", device_id, endpoint)
        link = self._add_link(device_id, endpoint)
        for listener in self.listeners:
            await listener(link)
        return link

    async def run(self) -> None:
        """Keep every link running, forever."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for device_id, link in self.links.items():
                self._tasks[device_id] = group.create_task(link.run(), name=f"device {device_id}")
            self._ready.set()
            await asyncio.Event().wait()
