"""Settings of one edge node process (``modelline edge``): TOML file, MODELLINE_EDGE_* variables, flags."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sdk.names import EndpointUrl
from sdk.package.manifest import check_name
from sdk.settings import (
    CertificateCheckS,
    LoginDelayS,
    LoginLockoutS,
    LoginMaxFailures,
    LoginMaxFailuresPerAddress,
    MaxByteString,
    MaxPackageBytes,
)

if TYPE_CHECKING:
    from sdk.opcua.logins import LoginPolicy


class EdgeSettings(BaseSettings):
    """Everything an edge node needs to know at start; see examples/edge.toml."""

    model_config = SettingsConfigDict(env_prefix="MODELLINE_EDGE_", frozen=True, extra="forbid")

    device_id: str = Field("edge-1", description="Name of this device under DeviceSet; also its serial number.")
    endpoint: EndpointUrl = Field(
        "opc.tcp://127.0.0.1:4841/modelline/edge/",
        description="Where the OPC UA server listens; use 0.0.0.0 to accept connections from other machines.",
    )
    data_dir: Path = Field(Path("var/edge"), description="Packages and slot state; must survive restarts.")
    allow_insecure: bool = Field(
        False,
        description="Also offer the unencrypted endpoint (SecurityPolicy None), for reading only: sessions on it may "
        "read, browse and subscribe, not call methods or write. Off by default (README 'Security').",
    )
    trust_dir: Path = Field(
        Path("trust"),
        description="Folder of root certificates (*.pem, *.crt, *.cer) and CRLs (*.crl) that package authors must "
        "chain to; legacy Ed25519 public keys (*.pub) there still accept deprecated .mlpkg packages.",
    )
    trust_check_s: float = Field(
        300.0,
        ge=0,
        description="How often the trust stores are read again and the signers of the models each slot serves are "
        "checked against them (new CRLs, removed roots); a model whose signer is no longer trusted keeps serving "
        "and is reported in UpdateStatus and DeviceHealth (MaintenanceRequired). 0 turns it off.",
    )
    approval_trust_dir: Path | None = Field(
        None,
        description="Folder of root certificates (and CRLs) of the plant's approvers: when set, every package must "
        "also carry an approval signature chaining to one of them (modelline package approve).",
    )
    slots: list[str] = Field(["main"], min_length=1, description="Model slots, one pipeline each.")
    bindings: dict[str, Path] = Field(
        default_factory=dict,
        description="Slot -> binding file (TOML or JSON), applied at start to a slot that has no binding yet.",
    )
    inference_threads: int = Field(2, ge=1, le=64, description="Worker threads for onnxruntime.")
    max_byte_string: MaxByteString = 1 << 20
    max_package_bytes: MaxPackageBytes = 512 << 20
    disk_reserve_bytes: int = Field(
        64 << 20,
        ge=0,
        description="Disk space every package transfer leaves free in data_dir, in bytes: GenerateFileForWrite "
        "needs it free and each Write needs room for the file plus it (refused with Bad_OutOfMemory, "
        "'needs 30 MB, 12 MB free').",
    )
    manufacturer: str = Field("ModelLine", description="DI Manufacturer of the device.")
    gateway_url: EndpointUrl | None = Field(
        None, description="A ModelLine gateway to register with at start (RegisterDevice), retried until it answers."
    )
    advertised_endpoint: EndpointUrl | None = Field(
        None, description="The endpoint the gateway should use to reach this node (default: endpoint)."
    )
    plc_security: dict[str, str] = Field(
        default_factory=dict,
        description="PLC endpoint URL -> security of the edge node's connection to it: 'auto' (the default: the "
        "strongest secure policy both offer, never None), a policy name such as 'Basic256Sha256' (optionally "
        "':Sign' or ':SignAndEncrypt'), or 'None' for a PLC that offers no security (README 'Security').",
    )
    gateway_user: str | None = Field(None, description="Login for RegisterDevice on the gateway (Engineer role).")
    gateway_password_file: Path | None = Field(None, description="File holding that login's password.")
    users_file: Path | None = Field(
        None, description="Logins and roles (TOML, see README 'Users and roles'); without it only anonymous clients."
    )
    anonymous_role: str = Field(
        "Observer",
        description="Role of clients that do not log in: Observer (read only, the default), Operator, Engineer, "
        "or empty to refuse them. Installing models and binding tags needs Engineer.",
    )
    login_max_failures: LoginMaxFailures = 5
    login_max_failures_per_address: LoginMaxFailuresPerAddress = 20
    login_lockout_s: LoginLockoutS = 300.0
    login_delay_s: LoginDelayS = 0.5
    certificate_check_s: CertificateCheckS = 3600.0
    audit_max_file_bytes: int = Field(
        16 << 20,
        ge=4096,
        description="Size at which the audit log (data_dir/audit/audit.jsonl) is rotated to "
        "audit-<first sequence>.jsonl; rotated files are kept (see README 'Audit trail').",
    )
    monitor_queue_max_records: int = Field(
        1_000_000,
        ge=100,
        description="Records the Model Monitor's queue (data_dir/monitor/records.sqlite3) holds until a collector "
        "acknowledges them; when full, the oldest records of the stream being written are dropped and counted "
        "(Records/DroppedRecords).",
    )
    monitor_sample_every: int = Field(
        1, ge=1, description="Record every n-th prediction of each pipeline (1: every one); statistics count all."
    )
    monitor_max_records_per_s: int = Field(
        100,
        ge=1,
        description="Most prediction records queued per pipeline in any one second; the others are counted as "
        "sampled_out in the pipeline's Statistics.",
    )
    monitor_log_records_per_s: int = Field(
        20, ge=1, description='Most warning and error log records queued (stream "") in any one second.'
    )

    @field_validator("device_id")
    @classmethod
    def _plain(cls, value: str) -> str:
        return check_name(value, "device id")

    @field_validator("slots")
    @classmethod
    def _slot_names(cls, value: list[str]) -> list[str]:
        for name in value:
            check_name(name, "slot name")
        if len(set(value)) != len(value):
            raise ValueError("slot names repeat")
        return value

    @property
    def login_policy(self) -> LoginPolicy:
        """The login_* settings, for the OPC UA server."""
        from sdk.opcua.logins import LoginPolicy  # asyncua: only when a server starts

        return LoginPolicy(
            max_failures=self.login_max_failures,
            max_failures_per_address=self.login_max_failures_per_address,
            lockout_s=self.login_lockout_s,
            delay_s=self.login_delay_s,
        )
