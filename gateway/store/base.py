"""What the gateway keeps, as pydantic records, and the interface every store implements.

The embedded default is SQLite (``sqlite.py``); a plant can put PostgreSQL behind
the same interface. Every method that changes state returns only after the
change is durable, so nothing the gateway has acknowledged is lost on a crash.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from gateway.deployments.options import StoredOptions
from nodesets.ids import DeploymentState
from sdk.audit import AuditRecord
from sdk.names import EndpointUrl, Name, Version
from sdk.package.manifest import Manifest

if TYPE_CHECKING:  # verification loads onnxruntime: not for what only reads records (the CLI's help)
    from sdk.package.verify import VerifiedPackage

MAX_TARGETS = 1000  # devices in one deployment


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelVersionRecord(_Record):
    """A stored, verified package."""

    name: Name
    version: Version
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")  # pydantic regexes are Rust: "$" is the very end
    size: int
    signer: str
    created: datetime
    stored_at: datetime
    manifest_json: str = Field(description="The package's manifest.json, as signed.")
    _parsed: tuple[str, Manifest] | None = PrivateAttr(default=None)  # manifest_json and its Manifest

    @classmethod
    def of(cls, verified: VerifiedPackage, stored_at: datetime) -> ModelVersionRecord:
        """The record of a verified package (ValidationError when the store could not keep it)."""
        m = verified.manifest
        return cls(
            name=m.name,
            version=m.version,
            sha256=verified.sha256,
            size=verified.size,
            signer=verified.signer,
            created=m.created,
            stored_at=stored_at,
            manifest_json=verified.manifest_bytes.decode(),
        )

    @model_validator(mode="after")
    def _manifest_matches(self) -> Self:
        manifest = Manifest.model_validate_json(self.manifest_json)
        if (manifest.name, manifest.version) != (self.name, self.version):
            raise ValueError(f"manifest_json is of {manifest.name} {manifest.version}, not {self.name} {self.version}")
        self._parsed = (self.manifest_json, manifest)
        return self

    @property
    def manifest(self) -> Manifest:
        """The manifest, as validated with the record (validated again only for a copy with another manifest_json:
        ``model_copy`` does not validate)."""
        parsed = self._parsed
        if parsed is None or parsed[0] != self.manifest_json:
            parsed = (self.manifest_json, Manifest.model_validate_json(self.manifest_json))
            self._parsed = parsed
        return parsed[1]


class DeviceRecord(_Record):
    """A registered edge device."""

    id: Name
    endpoint: EndpointUrl
    registered_at: datetime
    last_seen: datetime | None = None


class DeploymentRecord(_Record):
    """A deployment and how far it got."""

    id: Name
    model: Name | Literal[""] = Field(description="Empty only for a rollback of a device with no known model.")
    version: Version | Literal["fallback"]
    targets: list[Name] = Field(min_length=1, max_length=MAX_TARGETS)
    options_json: str = Field(description="StoredOptions as JSON; validated, so it always reads back.")
    state: DeploymentState
    progress: float = 0.0
    last_error: str = ""
    created_at: datetime
    updated_at: datetime

    @field_validator("options_json")
    @classmethod
    def _options_read_back(cls, value: str) -> str:
        StoredOptions.model_validate_json(value or "{}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets must name each device once")
        if (self.options.waves or 0) > len(self.targets):
            raise ValueError(f"waves {self.options.waves} is more than the {len(self.targets)} targets")
        return self

    @property
    def options(self) -> StoredOptions:
        """The options, as validated when the record was made."""
        return StoredOptions.model_validate_json(self.options_json or "{}")


RecordKind = Literal["model version", "device", "deployment", "deployment target"]


class UnreadableRecord(_Record):
    """A stored row that no longer validates: left out of what the store returns, reported instead."""

    kind: RecordKind
    key: str = Field(description="The row's key as stored (it may itself be the invalid part).")
    reason: str


class TargetRecord(_Record):
    """One target device of a deployment."""

    deployment_id: Name
    device_id: Name
    state: DeploymentState
    last_error: str = ""
    updated_at: datetime
    # The package (SHA-256) this target is brought to, once known: for a rollback, the device's Fallback as
    # it was when the rollback began, so that a resumed rollback recognises its own work and never swaps back.
    sha256: str = ""


class Store(Protocol):
    """The gateway's durable state."""

    async def put_model_version(self, record: ModelVersionRecord) -> None:
        """Add a model version (name and version are unique)."""

    async def model_versions(self) -> list[ModelVersionRecord]:
        """Every stored model version, oldest first."""

    async def model_version(self, name: str, version: str) -> ModelVersionRecord | None:
        """One model version, or None."""

    async def has_model_version(self, name: str, version: str) -> bool:
        """Whether a row holds this name and version, readable or not."""

    async def put_device(self, record: DeviceRecord) -> None:
        """Add or update a device."""

    async def devices(self) -> list[DeviceRecord]:
        """Every registered device."""

    async def put_deployment(self, record: DeploymentRecord, targets: list[TargetRecord]) -> None:
        """Add or update a deployment with its targets, atomically."""

    async def deployments(self) -> list[DeploymentRecord]:
        """Every deployment, oldest first."""

    async def deployment_ids(self) -> list[str]:
        """The id of every deployment row, readable or not."""

    async def targets(self, deployment_id: str) -> list[TargetRecord]:
        """The targets of a deployment."""

    async def append(self, records: list[AuditRecord]) -> list[AuditRecord]:
        """Append to the audit trail (the gateway's AuditLog, sdk/audit.py); returns them numbered. A record
        collected from a device (``device`` set, ``seq`` its number there) that is stored already is skipped."""

    async def fetch(self, device: str, after: int, limit: int) -> list[AuditRecord]:
        """Audit records after a sequence of this store, oldest first: the gateway's own (device '') or the ones
        collected from ``device``."""

    async def newest(self) -> int:
        """The sequence of the gateway's own newest audit record (0: none yet)."""

    async def last_collected(self, device: str) -> int:
        """The newest sequence (the device's own numbering) of the records collected from ``device``; 0: none."""

    def unreadable(self) -> list[UnreadableRecord]:
        """Stored rows met so far that do not validate (left out of every answer above)."""
