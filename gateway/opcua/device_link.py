"""The gateway's connection to one edge node: one OPC UA session, kept open, re-opened with backoff.

While connected it subscribes to the device's DeviceHealth, each slot's
CurrentVersion and each pipeline's State, and to every prediction output (at a
bounded publishing interval, for the mirror under Devices/<id>/Predictions). A
deployment borrows the session to drive the DI software update.

That one subscription is also the link's liveness: a quiet subscription sends a
keep-alive every ``keepalive_s`` (OPC 10000-4 5.13.1.1), so a link with no
Publish response (data or keep-alive) for ``liveness_s`` is lost; no request is
sent to the device just to see that it is there. A closed connection is seen at
once (the transport). The session asks for a short session timeout, so that an
edge node frees the session and subscription of a gateway that went away soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from asyncua import Client, Node, ua

from gateway.devices.device import Device, DeviceView, SlotUpdate
from gateway.identity import GATEWAY_NAME, INSTANCE_URI
from gateway.opcua.guarded_update import GuardedUpdate
from nodesets.ids import DI_URI, MODELLINE_URI, DeviceHealth, DeviceState, PipelineState
from sdk.di_client import SoftwareUpdateClient, during, pipeline_text, set_binding
from sdk.errors import ConnectionLost
from sdk.opcua.analog import VariableLayout, read_layout
from sdk.opcua.client import quiet_lost_links, watched_session
from sdk.opcua.connect import secure_client
from sdk.reconnect import reconnecting

_log = logging.getLogger(__name__)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


@dataclass(frozen=True)
class Prediction:
    """One mirrored output value."""

    pipeline: str
    output: str
    value: Any
    status: int
    source_time: datetime | None
    server_time: datetime | None
    layout: VariableLayout  # as the device shows the output: data type, shape, units, range


Listener = Callable[[Device], Awaitable[None]]
PredictionListener = Callable[["DeviceLink", Prediction], Awaitable[None]]
SessionWorker = Callable[["DeviceLink", Client], Coroutine[Any, Any, None]]
"""Work that uses the link's session while it is up (record collection): started when the link connects,
cancelled when the session ends; it is started again on the next session."""


class DeviceLink:
    """A kept-open session to one edge node."""

    def __init__(
        self,
        device_id: str,
        endpoint: str,
        *,
        user: str | None = None,
        password: str | None = None,
        pki_dir: Path | None = None,
        mirror_interval_ms: int = 250,
        backoff: tuple[float, float] = (0.5, 5.0),  # a device that comes back is used again within seconds
        update_timeouts: tuple[float, float] = (120.0, 30.0),
        keepalive_s: float = 5.0,
        liveness_s: float = 15.0,
        session_timeout_s: float = 30.0,
        last_seen_every_s: float = 60.0,
        connecting: asyncio.Semaphore | None = None,
    ) -> None:
        self.device_id = device_id
        self.endpoint = endpoint
        self._user, self._password = user, password
        self._pki_dir = pki_dir
        self.mirror_interval_ms = mirror_interval_ms
        self._backoff = backoff
        # An update call may take long (CloseAndCommit verifies the whole package); its session's probe must
        # outlast any one call, since a server answers one connection's requests in order.
        self._update_timeouts = update_timeouts
        self.keepalive_s = keepalive_s
        self.liveness_s = max(liveness_s, 2 * keepalive_s)  # one late keep-alive is no lost link
        self.session_timeout_s = session_timeout_s
        self.last_seen_every_s = last_seen_every_s
        # Shared by the gateway's links: at most this many connect at once (secure channel, session, the first
        # subscription), so hundreds of links come up in batches instead of all handshaking together.
        self._connecting = connecting if connecting is not None else asyncio.Semaphore(1)
        self.view = DeviceView()
        self.client: Client | None = None
        self._connected = asyncio.Event()
        self._refresh = asyncio.Event()
        self.listeners: list[Listener] = []
        self.prediction_listeners: list[PredictionListener] = []
        self.session_workers: list[SessionWorker] = []
        self._lock = asyncio.Lock()

    @property
    def online(self) -> bool:
        """Connected now."""
        return self._connected.is_set()

    async def wait_online(self, within_s: float | None = None) -> bool:
        """Wait until connected; False when ``within_s`` passes first."""
        try:
            await asyncio.wait_for(self._connected.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def refresh(self) -> None:
        """Re-read what the device offers (after an install changed its outputs)."""
        self._refresh.set()

    async def _changed(self) -> None:
        for listener in self.listeners:
            await listener(self)

    @asynccontextmanager
    async def update_session(self, slot: str | None = None) -> AsyncIterator[SlotUpdate]:
        """The DI software update of a slot over a session of its own, closed at the end.

        Not over the kept-open link: a server answers one connection's requests in order, and a
        CloseAndCommit that verifies a large package takes longer than the link's one-second
        liveness probe, which would then drop the link in the middle of the install (INTEROP.md)."""
        quiet_lost_links()
        call_s, probe_s = self._update_timeouts
        async with during("connecting for the update"):
            client = await self._new_client(call_s, probe_s)
            # a call may outlast the link's time-out (CloseAndCommit of a large package): the session must outlast it
            client.session_timeout = max(int(self.session_timeout_s * 1000), int(2_000 * call_s))
            await client.connect()
        try:
            async with during("finding the software update"):
                su = await SoftwareUpdateClient.find(client, None, slot)
            yield GuardedUpdate(su)
        finally:
            try:
                await asyncio.wait_for(client.disconnect(), 2.0)
            except Exception:  # the device may be gone already
                _log.debug("device %s: closing the update session failed", self.device_id, exc_info=True)

    async def set_binding(self, slot: str, binding_json: str) -> None:
        """SetBinding on the slot's pipeline."""
        async with during("setting the binding"):
            await set_binding(self._client(), slot, binding_json)

    async def binding(self, slot: str) -> str:
        """The pipeline's Binding variable."""
        async with during("reading the binding"):
            return await pipeline_text(self._client(), slot, "Binding")

    async def configuration(self, slot: str) -> str:
        """The pipeline's Configuration variable (read after SetBinding: requests are answered in order)."""
        async with during("reading the configuration"):
            return await pipeline_text(self._client(), slot, "Configuration")

    async def _new_client(self, call_s: float, probe_s: float) -> Client:
        """A client for the device: over the strongest secure endpoint with the gateway's application
        certificate, logged in as the configured user, else with that certificate as X509 identity
        (the device maps it to Engineer when it trusts it). Without a PKI folder (unit tests) a plain one."""
        if self._pki_dir is None:
            client = Client(self.endpoint, timeout=call_s, watchdog_intervall=probe_s)
            if self._user:
                client.set_user(self._user)
                client.set_password(self._password or "")
            return client
        return await secure_client(
            self.endpoint,
            self._pki_dir,
            application_uri=INSTANCE_URI,
            name=GATEWAY_NAME,
            timeout_s=call_s,
            watchdog_intervall=probe_s,
            user=self._user,
            password=self._password,
            certificate_identity=not self._user,
        )

    def _client(self) -> Client:
        if self.client is None or not self.online:
            raise ConnectionLost(f"device {self.device_id} is not connected")
        return self.client

    async def run(self) -> None:
        """Stay connected, forever."""
        await reconnecting(f"device {self.device_id}", self._session, self._backoff, on_down=self._down, logger=_log)

    async def _down(self, reason: str) -> None:
        self.view.reason = reason
        self._connected.clear()
        self.client = None
        if self.view.state is not DeviceState.OFFLINE:
            self.view.state = DeviceState.OFFLINE
            await self._changed()

    async def _session(self, connected: Callable[[], None]) -> None:
        await self._connecting.acquire()
        held = True

        def connecting_done() -> None:  # after the first subscription, or when the attempt failed
            nonlocal held
            if held:
                held = False
                self._connecting.release()

        try:
            await self._reachable()
            # asyncua's watchdog would Read ServerState every watchdog_intervall: the keep-alives prove the link
            # instead (_keepalives), so its probe is pushed out to the liveness horizon's order (not the 1 s default).
            client = await self._new_client(10, max(600.0, 10 * self.liveness_s))
            # The edge node keeps our session (and its subscription) this long after the link dropped (OPC 10000-4
            # 5.6.2: the session outlives its channel for the timeout): short, so a lost gateway costs it little.
            client.session_timeout = int(self.session_timeout_s * 1000)
            async with watched_session(client, connected, f"device {self.device_id}") as lost:
                try:
                    await self._serve(client, lost, connecting_done)
                finally:
                    self._connected.clear()
        finally:
            connecting_done()

    async def _reachable(self) -> None:
        """Raise when nothing accepts a TCP connection at the endpoint's host and port.

        A secure client loads the gateway's certificate and private key for every attempt (tens of milliseconds
        of CPU); an offline device refuses the connection, so a gateway with many offline devices tried every
        few seconds spent its loop on key loading. A refused or unanswered TCP connect costs next to nothing."""
        url = urlsplit(self.endpoint)
        if url.hostname is None:
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, url.port or 4840), 10)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"{url.hostname}:{url.port or 4840} unreachable: {exc}") from exc
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _serve(self, client: Client, lost: asyncio.Event, subscribed: Callable[[], None]) -> None:
        self.client = client
        workers: list[asyncio.Task[None]] = []
        sub: Any = None
        try:
            while True:
                self._refresh.clear()
                sub = await self._subscribe(client)
                subscribed()
                self._connected.set()
                await self._changed()
                if not workers:
                    workers = [
                        asyncio.create_task(work(self, client), name=f"device {self.device_id} session worker")
                        for work in self.session_workers
                    ]
                refreshed = asyncio.ensure_future(self._refresh.wait())
                gone = asyncio.ensure_future(lost.wait())
                silent = asyncio.ensure_future(self._keepalives(sub))
                try:
                    done, _ = await asyncio.wait({refreshed, gone, silent}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also when the link is stopped: a keep-alive watch left running kept the gateway alive
                    for task in (refreshed, gone, silent):
                        task.cancel()
                if gone in done:
                    raise ConnectionError("connection lost")
                if silent in done:
                    silent.result()  # raises: no keep-alive in time
                await sub.delete()  # refresh: subscribe again to what the device offers now
        finally:
            if sub is not None and sub.last_publish_at is not None:  # LastSeen: the last word from the device
                self.view.last_seen = datetime.now(UTC) - _seconds(time.monotonic() - sub.last_publish_at)
            for worker in workers:
                worker.cancel()
            for outcome in await asyncio.gather(*workers, return_exceptions=True):
                if isinstance(outcome, Exception):
                    _log.warning("device %s: a session worker failed: %s", self.device_id, outcome)

    async def _keepalives(self, sub: Any) -> None:
        """Return never; raise when no Publish response (data or keep-alive) came for ``liveness_s``.

        Wakes about once per keep-alive period, and refreshes ``view.last_seen`` (shown at most every
        ``last_seen_every_s``) from the newest response; a change of state is shown at once elsewhere."""
        started = time.monotonic()
        shown = started
        while True:
            last = sub.last_publish_at or started
            now = time.monotonic()
            if now - last >= self.liveness_s:
                await asyncio.sleep(0)  # a response already read but not yet handled counts
                last = sub.last_publish_at or started
                if time.monotonic() - last >= self.liveness_s:
                    raise ConnectionError(f"no keep-alive from the device for {self.liveness_s:g} s")
            if last - shown >= self.last_seen_every_s:
                shown = last
                self.view.last_seen = datetime.now(UTC) - _seconds(time.monotonic() - last)
                await self._changed()
            await asyncio.sleep(min(last + self.liveness_s - time.monotonic(), self.keepalive_s) + 0.01)

    def _parameters(self) -> ua.CreateSubscriptionParameters:
        """Publishing at ``mirror_interval_ms``, a keep-alive every ``keepalive_s`` when nothing changed."""
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = float(self.mirror_interval_ms)
        keepalive = max(1, math.ceil(self.keepalive_s * 1000 / self.mirror_interval_ms))
        params.RequestedMaxKeepAliveCount = keepalive
        # The edge deletes the subscription after this many intervals without a Publish request: at least three
        # keep-alives (OPC 10000-4 5.13.2) and the session timeout, beyond which the session is gone anyway.
        params.RequestedLifetimeCount = max(
            3 * keepalive, math.ceil(self.session_timeout_s * 1000 / self.mirror_interval_ms)
        )
        params.MaxNotificationsPerPublish = 10000
        params.PublishingEnabled = True
        params.Priority = 0
        return params

    async def _subscribe(self, client: Client) -> Any:
        di = await client.get_namespace_index(DI_URI)
        ml = await client.get_namespace_index(MODELLINE_URI)
        watched: dict[ua.NodeId, Callable[[ua.DataValue], Awaitable[None]]] = {}
        device_set = await client.nodes.objects.get_child(f"{di}:DeviceSet")
        for device in await device_set.get_children(nodeclassmask=ua.NodeClass.Object):
            try:
                health = await device.get_child(f"{di}:DeviceHealth")
            except ua.UaStatusCodeError:
                continue
            watched[health.nodeid] = self._on_health
        su = await SoftwareUpdateClient.find(client)
        watched[
            (await su.update.get_child([f"{di}:Loading", f"{di}:CurrentVersion", f"{di}:SoftwareRevision"])).nodeid
        ] = self._on_version
        owners = await su.update.get_referenced_nodes(refs=ua.ObjectIds.HasAddIn, direction=ua.BrowseDirection.Inverse)
        slot_component = owners[0]
        watched[(await slot_component.get_child(f"{di}:Model")).nodeid] = self._on_model
        folder = await client.nodes.objects.get_child([f"{ml}:InferenceServer", f"{ml}:Pipelines"])
        outputs: dict[ua.NodeId, tuple[str, str, VariableLayout]] = {}
        for pipeline in await folder.get_children():
            name = str((await pipeline.read_browse_name()).Name)
            watched[(await pipeline.get_child(f"{ml}:State")).nodeid] = self._pipeline_state(name)
            try:
                evidence = await pipeline.get_child(f"{ml}:GoodConfiguration")
            except ua.UaStatusCodeError:  # an edge node from before it: deployments with a binding fail there
                _log.warning("device %s: pipeline %s shows no GoodConfiguration", self.device_id, name)
            else:
                watched[evidence.nodeid] = self._good_configuration(name)
            for out in await (await pipeline.get_child(f"{ml}:Outputs")).get_children():
                outputs[out.nodeid] = (name, str((await out.read_browse_name()).Name), await read_layout(out))
        link = self

        class Handler:
            async def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
                dv = data.monitored_item.Value
                link.view.last_seen = datetime.now(UTC)
                if node.nodeid in watched:
                    await watched[node.nodeid](dv)
                elif node.nodeid in outputs:
                    pipeline, output, layout = outputs[node.nodeid]
                    prediction = Prediction(
                        pipeline,
                        output,
                        dv.Value.Value if dv.Value else None,
                        dv.StatusCode.value if dv.StatusCode else 0,
                        dv.SourceTimestamp,
                        dv.ServerTimestamp,
                        layout,
                    )
                    for listener in link.prediction_listeners:
                        await listener(link, prediction)

            def status_change_notification(self, status: Any) -> None:
                """Subscription status changes surface as a lost connection through the watchdog."""

        sub = await client.create_subscription(self._parameters(), Handler())
        nodes = [client.get_node(n) for n in [*watched, *outputs]]
        await sub.subscribe_data_change(nodes, queuesize=1)
        self.view.last_seen = datetime.now(UTC)
        return sub

    async def _on_health(self, dv: ua.DataValue) -> None:
        value = dv.Value.Value if dv.Value is not None else None
        self.view.health = DeviceHealth(value) if value in set(DeviceHealth) else None
        await self._evaluate()

    async def _on_version(self, dv: ua.DataValue) -> None:
        self.view.active_version = str(dv.Value.Value or "") if dv.Value is not None else ""
        await self._evaluate()

    async def _on_model(self, dv: ua.DataValue) -> None:
        value = dv.Value.Value if dv.Value is not None else None
        self.view.active_model = str(getattr(value, "Text", value) or "")
        await self._evaluate()

    def _pipeline_state(self, name: str) -> Callable[[ua.DataValue], Awaitable[None]]:
        async def update(dv: ua.DataValue) -> None:
            value = dv.Value.Value if dv.Value is not None else None
            self.view.pipelines[name] = PipelineState(value) if value in set(PipelineState) else PipelineState.FAULTED
            await self._evaluate()

        return update

    def _good_configuration(self, name: str) -> Callable[[ua.DataValue], Awaitable[None]]:
        async def update(dv: ua.DataValue) -> None:
            self.view.good_configuration[name] = str(dv.Value.Value or "") if dv.Value is not None else ""

        return update

    async def _evaluate(self) -> None:
        fine = (PipelineState.RUNNING, PipelineState.NO_MODEL)
        troubled = [p for p, s in self.view.pipelines.items() if s not in fine]
        healthy = self.view.health in (None, DeviceHealth.NORMAL) and not troubled
        state = DeviceState.ONLINE if healthy else DeviceState.DEGRADED
        health = self.view.health.name if self.view.health is not None else ""
        reason = "" if healthy else (f"pipeline(s) {', '.join(troubled)} not running" if troubled else "device health")
        if not troubled and health and not healthy:  # e.g. MAINTENANCE_REQUIRED: a model's signer is no longer trusted
            reason = f"device health {health}"
        self.view.state, self.view.reason = state, reason
        await self._changed()  # health, versions and pipeline states change rarely: show each change at once
