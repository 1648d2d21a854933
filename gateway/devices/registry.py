"""Registered edge devices: their records in the store and their links, one running task each."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from gateway.devices.device import Device, DeviceFactory
from gateway.store.base import DeviceRecord, Store
from sdk import audit
from sdk.errors import NotFound, UsageError
from sdk.names import first_problem

_log = logging.getLogger(__name__)

Listener = Callable[[Device], Awaitable[None]]
Preparer = Callable[[str], Awaitable[None]]


class DeviceRegistry:
    """Devices by id; ``run()`` keeps each one's link alive."""

    def __init__(
        self,
        store: Store,
        factory: DeviceFactory,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._factory = factory
        self._clock = clock
        self.links: dict[str, Device] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self.listeners: list[Listener] = []
        self.preparers: list[Preparer] = []  # run before a new device is saved (its nodes): a failure saves nothing

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` on every change of every device, registered now or later."""
        self.listeners.append(listener)
        for link in self.links.values():
            link.listeners.append(listener)

    def get(self, device_id: str) -> Device:
        """A registered device; NotFound otherwise."""
        link = self.links.get(device_id)
        if link is None:
            raise NotFound(f"no device {device_id!r} is registered (RegisterDevice first)")
        return link

    async def load(self) -> None:
        """Create links for every stored device (started by ``run``)."""
        for record in await self._store.devices():
            self._add_link(record.id, record.endpoint)

    def _add_link(self, device_id: str, endpoint: str) -> Device:
        link = self._factory(device_id, endpoint)
        link.listeners.extend(self.listeners)
        self.links[device_id] = link
        if self._group is not None:
            self._tasks[device_id] = self._group.create_task(link.run(), name=f"device {device_id}")
        return link

    async def register(self, device_id: str, endpoint: str, actor: str = "") -> Device:
        """Add a device or move it to a new endpoint; saved before it is answered.

        The record is validated by the model that stores it, and the device's nodes are
        made, before anything is saved: a refused device leaves nothing behind.
        """
        now = self._clock()
        try:
            record = DeviceRecord(id=device_id, endpoint=endpoint, registered_at=now)
        except ValidationError as exc:
            raise UsageError(first_problem(exc)) from None
        existing = self.links.get(device_id)
        if existing is not None and existing.endpoint == endpoint:
            return existing
        for prepare in self.preparers:
            await prepare(record.id)
        await self._store.put_device(record)
        audit.record("register device", "ok", target=device_id, detail=endpoint)
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
            await asyncio.Event().wait()
