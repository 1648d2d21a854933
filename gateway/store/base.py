"""What the gateway keeps, as pydantic records, and the interface every store implements.

The embedded default is SQLite (``sqlite.py``); a plant can put PostgreSQL behind
the same interface. Every method that changes state returns only after the
change is durable, so nothing the gateway has acknowledged is lost on a crash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from nodesets.ids import DeploymentState


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelVersionRecord(_Record):
    """A stored, verified package."""

    name: str
    version: str
    sha256: str
    size: int
    signer: str
    created: datetime
    stored_at: datetime
    manifest_json: str = Field(description="The package's manifest.json, as signed.")


class DeviceRecord(_Record):
    """A registered edge device."""

    id: str
    endpoint: str
    registered_at: datetime
    last_seen: datetime | None = None


class DeploymentRecord(_Record):
    """A deployment and how far it got."""

    id: str
    model: str
    version: str
    targets: list[str]
    options_json: str
    state: DeploymentState
    progress: float = 0.0
    last_error: str = ""
    created_at: datetime
    updated_at: datetime


class TargetRecord(_Record):
    """One target device of a deployment."""

    deployment_id: str
    device_id: str
    state: DeploymentState
    last_error: str = ""
    updated_at: datetime


class AuditEntry(_Record):
    """Who did what, when."""

    at: datetime
    actor: str
    action: str
    detail: str = ""


class Store(Protocol):
    """The gateway's durable state."""

    async def put_model_version(self, record: ModelVersionRecord) -> None:
        """Add a model version (name and version are unique)."""

    async def model_versions(self) -> list[ModelVersionRecord]:
        """Every stored model version, oldest first."""

    async def model_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """One model version, or None."""

    async def put_device(self, record: DeviceRecord) -> None:
        """Add or update a device."""

    async def devices(self) -> list[DeviceRecord]:
        """Every registered device."""

    async def put_deployment(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Add or update a deployment with its targets, atomically."""

    async def deployments(self) -> list[DeploymentRecord]:
        """Every deployment, oldest first."""

    async def targets(self, deployment_id: str) -> list[TargetRecord]:
        """The targets of a deployment."""

    async def audit(self, entry: AuditEntry) -> None:
        """Append to the audit trail."""

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries, newest first."""
