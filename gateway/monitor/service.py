"""The Model Monitor service: record collection per connected device, and feedback from clients.

Each device link, while its session is up, runs ``collect`` with an OPC UA record
source (gateway/opcua/record_link.py); ``submit_feedback`` is what the
SubmitFeedback method hands its checked arguments to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import ValidationError

from gateway.monitor.base import Feedback
from gateway.monitor.ingest import RecordIngest, RecordSource
from gateway.monitor.store import MonitorStore
from gateway.store.base import DeploymentRecord, TargetRecord
from nodesets.ids import DeploymentState
from sdk.errors import NotFound, OutOfRange, UsageError
from sdk.names import first_problem

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
        known_device: Callable[[str], bool] = lambda _: True,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self._poll_s = poll_s
        self._max_records = max_records
        self._known_device = known_device
        self._clock = clock
        self.ingests: dict[str, RecordIngest] = {}
        # (device, model, version) -> the newest deployment that brought that version to that device
        self._deployments: dict[tuple[str, str, str], str] = {}

    async def collect(self, device_id: str, source: RecordSource, streams: Callable[[], Iterable[str]]) -> None:
        """Collect one device's records until cancelled (when its session ends)."""
        ingest = RecordIngest(
            device_id,
            source,
            self.store,
            streams,
            max_records=self._max_records,
            poll_s=self._poll_s,
            deployment_of=self.deployment_of,
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
            if target.state in _ARRIVED:
                self._deployments[(target.device_id, record.model, record.version)] = record.id

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
