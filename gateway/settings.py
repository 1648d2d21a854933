"""Settings of the gateway process (``modelline gateway``): TOML file, MODELLINE_GATEWAY_* variables, flags."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, FilePath
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.monitor.thresholds import MonitorThresholds
from sdk.names import EndpointUrl
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


class GatewaySettings(BaseSettings):
    """Everything the Model Manager needs at start; see examples/gateway.toml."""

    model_config = SettingsConfigDict(env_prefix="MODELLINE_GATEWAY_", frozen=True, extra="forbid")

    endpoint: EndpointUrl = Field(
        "opc.tcp://127.0.0.1:4840/modelline/",
        description="Where the OPC UA server listens; use 0.0.0.0 to accept connections from other machines.",
    )
    data_dir: Path = Field(Path("var/gateway"), description="Database and package store; must survive restarts.")
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
    approval_trust_dir: Path | None = Field(
        None,
        description="Folder of root certificates (and CRLs) of the plant's approvers: when set, every package must "
        "also carry an approval signature chaining to one of them (modelline package approve).",
    )
    users_file: Path | None = Field(None, description="Logins and roles (TOML); without it only anonymous clients.")
    anonymous_role: str = Field("Observer", description="Role of clients that do not log in; empty refuses them.")
    login_max_failures: LoginMaxFailures = 5
    login_max_failures_per_address: LoginMaxFailuresPerAddress = 20
    login_lockout_s: LoginLockoutS = 300.0
    login_delay_s: LoginDelayS = 0.5
    certificate_check_s: CertificateCheckS = 3600.0
    max_byte_string: MaxByteString = 1 << 20
    max_package_bytes: MaxPackageBytes = 512 << 20
    edge_user: str | None = Field(None, description="Login the gateway uses on edge nodes (needs the Engineer role).")
    edge_password_file: FilePath | None = Field(None, description="File holding that login's password.")
    device_call_timeout_s: float = Field(
        120.0,
        ge=1,
        le=3600,
        description="How long one update call to a device may take (a CloseAndCommit verifies the whole package).",
    )
    parallel_transfers: int = Field(
        8,
        ge=1,
        le=1000,
        description="Package transfers to devices at once, over every deployment: the rest of a wave waits its turn "
        "(each transfer holds a chunk in flight; transfers share the CPU, so more at once is not faster).",
    )
    device_probe_s: float = Field(
        30.0, ge=1, le=600, description="Liveness probe of a device's update session: a link silent this long is lost."
    )
    device_keepalive_s: float = Field(
        5.0,
        ge=0.5,
        le=600,
        description="A device's kept-open link asks for a keep-alive this often when nothing changes (its "
        "subscription's MaxKeepAliveCount, OPC 10000-4 5.13.1); the keep-alives are the link's liveness.",
    )
    device_liveness_s: float = Field(
        15.0,
        ge=1,
        le=3600,
        description="A device link with no publish response (data or keep-alive) this long is lost and reconnects; "
        "at least twice device_keepalive_s. A closed connection is seen at once.",
    )
    device_session_timeout_s: float = Field(
        30.0,
        ge=5,
        le=3600,
        description="Session timeout the gateway asks of each edge node: how long an edge keeps a lost gateway's "
        "session and subscriptions before it frees them.",
    )
    device_connect_concurrency: int = Field(
        25,
        ge=1,
        le=1000,
        description="How many device links may be connecting at once (secure channel, session, subscription); the "
        "others wait their turn, so a gateway with hundreds of devices brings them up in batches at start.",
    )

    sagemaker_groups: list[str] = Field(
        default_factory=list, description="Model package groups to import new Approved versions from (empty: off)."
    )
    sagemaker_interval_s: int = Field(300, ge=10, description="How often to look for new Approved versions.")
    sagemaker_region: str | None = Field(None, description="AWS region of the registry.")
    sagemaker_endpoint_url: str | None = Field(None, description="SageMaker/S3-compatible endpoint instead of AWS.")
    signing_key: Path | None = Field(
        None,
        description="Private key that signs imported models (with signing_cert; alone, an Ed25519 key writes a "
        "deprecated .mlpkg); its root must be in trust_dir.",
    )
    signing_cert: Path | None = Field(
        None, description="X.509 certificate chain (PEM) of signing_key: imported models become DI packages."
    )
    backup_interval_s: int = Field(
        3600,
        ge=0,
        description="How often the database is backed up (SQLite online backup API, safe while serving), in "
        "seconds; 0 turns scheduled backups off.",
    )
    backup_dir: Path | None = Field(
        None, description="Folder of the database backups; default <data_dir>/backups (better: another disk)."
    )
    backup_keep: int = Field(
        24, ge=1, description="How many of the newest backups to keep; older ones are deleted after each backup."
    )

    audit_collect_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How often the gateway copies new audit records from each connected edge node, in seconds "
        "(needs edge_user to have the Engineer role there).",
    )
    monitor_poll_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="How often the Model Monitor asks each connected edge node for new prediction and log records "
        "when no RecordsReady event said some are waiting, in seconds.",
    )
    monitor_idle_poll_s: float = Field(
        300.0,
        gt=0,
        le=3600,
        description="With a device's RecordsReady events subscribed, polling is a safety net: a device that had "
        "nothing is asked again after twice the wait, up to this many seconds (an event wakes it at once, and the "
        "edge node repeats the event every 30 s while records wait).",
    )
    monitor_max_records: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Records fetched from an edge node in one FetchRecords call (and stored in one transaction).",
    )

    monitor_retention_days: float = Field(
        30,
        gt=0,
        description="How long the Model Monitor keeps prediction records, feedback and edge logs, in days; the first "
        "records of each deployment (its output drift baseline) and the counts since deployment are kept for good.",
    )

    monitor_figures_s: float = Field(
        10.0,
        ge=1,
        le=3600,
        description="How often ModelMonitor/<deployment>/<device> shows fresh figures (at most), in seconds.",
    )

    monitor: MonitorThresholds = Field(
        default_factory=MonitorThresholds,
        description="Windows, minimum evidence and thresholds of the Model Monitor's figures (a [monitor] table).",
    )
    error_rate_warning: float = Field(
        0.05, gt=0, le=1, description="Share of Bad predictions in the window that raises ErrorRateAlarm (Warning)."
    )
    error_rate_alarm: float = Field(
        0.2, gt=0, le=1, description="Share of Bad predictions in the window that makes ErrorRateAlarm an Alarm."
    )
    offline_alarm_s: float = Field(
        60.0, gt=0, description="A device Offline this long raises ModelManager/Devices/<id>/OfflineAlarm, in seconds."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of the Prometheus /metrics endpoint (None: off)."
    )
    metrics_address: str = Field("127.0.0.1", description="Address the /metrics endpoint listens on.")
    history_days: float = Field(
        30, gt=0, description="How long the history of the monitor's figures, predictions and alarm events is kept."
    )

    @property
    def db_path(self) -> Path:
        """The SQLite database."""
        return self.data_dir / "gateway.sqlite3"

    @property
    def monitor_db_path(self) -> Path:
        """The Model Monitor's SQLite database (records, feedback): high volume, kept apart from db_path."""
        return self.data_dir / "monitor.sqlite3"

    @property
    def backups_dir(self) -> Path:
        """Where database backups go."""
        return self.backup_dir if self.backup_dir is not None else self.data_dir / "backups"

    @property
    def packages_dir(self) -> Path:
        """The content-addressed package store."""
        return self.data_dir / "packages"

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
