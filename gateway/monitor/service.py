"""The Model Monitor service: record collection per connected device, feedback from clients, live figures.

Each device link, while its session is up, runs ``collect`` with an OPC UA record
source (gateway/opcua/record_link.py); ``submit_feedback`` is what the
SubmitFeedback method hands its checked arguments to.

Live figures (gateway/monitor/live.py): one ``LiveFigures`` per (deployment, device), made
when the deployment's version arrives on the device (``deployment_changed``; at gateway start
for every stored deployment, rebuilt from the store), fed every newly stored batch of
the device's predictions credited to that deployment, and the feedback pairs joined to
them (read from the store whenever the deployment's feedback count moved, so results by
SubmitFeedback and by tag count alike, each sample id once). A newer deployment of the
same model to the same device *supersedes* the older one there: its LiveFigures is dropped
(no more records reach it) and ``superseded`` names it, so the alarm layer clears its
conditions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from pydantic import ValidationError

from gateway.monitor.base import Feedback
from gateway.monitor.ingest import RecordIngest, RecordSource
from gateway.monitor.live import LiveFigures
from gateway.monitor.store import MonitorStore
from gateway.monitor.thresholds import FigureThresholds, MonitorThresholds
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets.ids import DeploymentState
from sdk.errors import ModelLineError, NotFound, OutOfRange, UsageError
from sdk.monitor.records import PredictionRecord, RecordEnvelope
from sdk.names import first_problem
from sdk.package.manifest import Manifest

_log = logging.getLogger(__name__)

MAX_SEQUENCE = 2**63 - 1  # SQLite INTEGER
# A deployment brought its version to a target once the target got this far (a target that is installing may
# already predict with it: the version serves as soon as its install succeeded).
_ARRIVED = {DeploymentState.INSTALLING, DeploymentState.CONFIRMING, DeploymentState.ACTIVE}


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class Monitor:
    """Collects every connected device's records into the monitor store and takes feedback."""

    def __init__(
        self,
        store: MonitorStore,
        *,
        poll_s: float = 2.0,
        max_records: int = 1000,
        idle_poll_s: float | None = None,
        known_device: Callable[[str], bool] = lambda _: True,
        clock: Callable[[], datetime] = utc_now,
        thresholds: MonitorThresholds | None = None,
        error_rate: FigureThresholds | None = None,
        manifest_of: Callable[[str, str, str], Awaitable[Manifest | None]] | None = None,
    ) -> None:
        self.store = store
        self.thresholds = thresholds or MonitorThresholds()
        self.error_rate = error_rate or FigureThresholds(warning=0.05, alarm=0.2, deadband=0.01)
        self._manifest_of = manifest_of
        self.live: dict[tuple[str, str], LiveFigures] = {}  # (deployment, device)
        self.superseded: dict[tuple[str, str], str] = {}  # (deployment, device) -> the deployment after it
        self._poll_s = poll_s
        self._max_records = max_records
        self._idle_poll_s = idle_poll_s
        self._known_device = known_device
        self._clock = clock
        self.ingests: dict[str, RecordIngest] = {}
        # (device, model, version) -> the newest deployment that brought that version to that device
        self._deployments: dict[tuple[str, str, str], str] = {}

    async def collect(
        self, device_id: str, source: RecordSource, streams: Callable[[], Iterable[str]], *, events: bool = False
    ) -> None:
        """Collect one device's records until cancelled (when its session ends); ``events``: the device's
        RecordsReady events wake the collection, so an idle device is polled less often (``idle_poll_s``)."""
        ingest = RecordIngest(
            device_id,
            source,
            self.store,
            streams,
            max_records=self._max_records,
            poll_s=self._poll_s,
            idle_poll_s=self._idle_poll_s if events else None,
            deployment_of=self.deployment_of,
            on_stored=lambda _stream, envelopes: self.stored(device_id, envelopes),
        )
        self.ingests[device_id] = ingest
        try:
            await ingest.run()
        finally:
            if self.ingests.get(device_id) is ingest:
                del self.ingests[device_id]

    def wake(self, device_id: str) -> None:
        """Records are waiting on a device (its RecordsReady event): collect now."""
        ingest = self.ingests.get(device_id)
        if ingest is not None:
            ingest.wake()

    def deployment_of(self, device: str, model: str, version: str) -> str | None:
        """The deployment that brought ``model`` ``version`` to ``device``, if the gateway made one."""
        return self._deployments.get((device, model, version))

    async def deployment_changed(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Follow deployments (a DeploymentService listener), to credit predictions to them."""
        for target in targets:
            key = (record.id, target.device_id)
            if target.state not in _ARRIVED or key in self.live or key in self.superseded:
                continue
            device = target.device_id
            # Figures first (rebuilt from what is stored), then credit: no record of it can miss them.
            manifest = await self._start_figures(record, device, target.sha256)
            for (deployment, other), live in list(self.live.items()):
                if other == device and deployment != record.id and live.model == record.model:
                    del self.live[(deployment, other)]
                    self.superseded[(deployment, other)] = record.id
            # A rollback to each device's fallback names no version: the target's package says which one it is.
            version = manifest.version if manifest is not None else record.version
            self._deployments[(device, record.model, version)] = record.id

    async def _start_figures(self, record: DeploymentRecord, device: str, sha256: str) -> Manifest | None:
        """Start the figures of ``record`` on ``device``; returns the manifest of the version it brings."""
        if self._manifest_of is None:
            return None
        try:
            manifest = await self._manifest_of(record.model, record.version, sha256)
            if manifest is None:
                _log.warning("deployment %s: %s %s is not stored, no figures", record.id, record.model, record.version)
                return None
            live = LiveFigures(record.id, device, manifest, self.thresholds, self.error_rate)
            await live.replay(self.store)
        except (ModelLineError, ValueError, OSError) as exc:  # figures are for show: never stop a deployment
            _log.warning("deployment %s on %s: no figures: %s", record.id, device, exc)
            return None
        self.live[(record.id, device)] = live
        return manifest

    async def stored(self, device: str, envelopes: list[RecordEnvelope]) -> None:
        """Count newly stored records of a device into the figures of the deployments they are credited to."""
        batches: dict[str, list[PredictionRecord]] = {}
        for envelope in envelopes:
            r = envelope.record
            if isinstance(r, PredictionRecord):
                deployment = self.deployment_of(device, r.model, r.version)
                if deployment is not None:
                    batches.setdefault(deployment, []).append(r)
        for deployment, records in batches.items():
            live = self.live.get((deployment, device))
            if live is None:
                continue
            try:
                live.add(records)
            except (ValueError, TypeError) as exc:  # a record the figures cannot read must not stop collection
                _log.warning("deployment %s on %s: figures skip a batch: %s", deployment, device, exc)

    async def join_feedback(self, live: LiveFigures, feedback_count: int) -> None:
        """Count the pairs joined since the last call, when the deployment's feedback count moved."""
        if feedback_count == live.feedback_seen:
            return
        live.feedback_seen = feedback_count
        live.add_pairs(await self.store.pairs(device=live.device, model=live.model, version=live.version))

    async def submit_feedback(
        self,
        device: str,
        pipeline: str,
        sequence: int,
        source_time: datetime | None,
        part_key: str,
        value: float,
        sample_id: str,
    ) -> bool:
        """Store a measured result once per sample id; returns whether its prediction is already stored.

        The prediction is named by ``sequence`` (0: not given), else ``part_key`` (empty: not given),
        else ``source_time`` (None: not given); only the first one given is kept."""
        if not sample_id:
            raise UsageError("SampleId is empty: a retry is recognised by it, so every result needs one")
        if not device or not self._known_device(device):
            raise NotFound(f"no device {device!r} is registered")
        if not pipeline:
            raise UsageError("Pipeline is empty")
        if not math.isfinite(value):
            raise UsageError(f"Value {value} is not a finite number")
        if sequence > MAX_SEQUENCE:
            raise OutOfRange(f"Sequence {sequence} is larger than any record sequence")
        key: dict[str, object]
        if sequence:
            key = {"sequence": sequence}
        elif part_key:
            key = {"part_key": part_key}
        elif source_time is not None:
            key = {"source_time": source_time}
        else:
            raise UsageError("name the prediction: Sequence, PartKey or SourceTime")
        try:
            feedback = Feedback.model_validate(
                {
                    "sample_id": sample_id,
                    "device": device,
                    "pipeline": pipeline,
                    "value": value,
                    "time": self._clock(),
                    **key,
                }
            )
        except ValidationError as exc:
            raise UsageError(first_problem(exc)) from None
        return await self.store.add_feedback(feedback)
