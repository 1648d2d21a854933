"""The gateway service: the Model Manager's and the Model Monitor's OPC UA server over their stores.

    async with Gateway(settings) as gateway:   # store open, address space rebuilt from it, server started
        await gateway.wait_closed()

Background work (one session per edge device, which also carries the collection of
the device's records, and one task per running deployment) is owned by the gateway
and stopped with it; apscheduler starts deployments at their maintenance window,
refreshes each device's State and LastSeen, and backs the database up. The gateway
holds its data folder's lock while it runs and refuses a database that is missing or
damaged (gateway/store/files.py).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from asyncua import Server

from gateway.deployments.service import DeploymentService
from gateway.devices.device import Device
from gateway.devices.registry import DeviceRegistry
from gateway.identity import GATEWAY_NAME, INSTANCE_URI
from gateway.models.repository import PackageRepository
from gateway.monitor.prometheus import MetricsEndpoint
from gateway.monitor.retention import Retention
from gateway.monitor.service import Monitor
from gateway.monitor.store import MonitorStore
from gateway.monitor.thresholds import FigureThresholds
from gateway.opcua.audit_link import audit_collector
from gateway.opcua.device_link import DeviceLink
from gateway.opcua.devices import DeviceNodes
from gateway.opcua.manager import ManagerNodes
from gateway.opcua.models import ModelNodes
from gateway.opcua.monitor import MonitorNodes, record_collector
from gateway.opcua.operations_alarms import OperationsAlarms
from gateway.settings import GatewaySettings
from gateway.store import files
from gateway.store.sqlite import SqliteStore
from nodesets import Namespaces
from nodesets.ids import DeviceState, ModelLine
from sdk import heap
from sdk.audit_log import AuditWriter
from sdk.certs import load_identity
from sdk.errors import ModelLineError, UsageError
from sdk.keys import TrustStore, load_private_key
from sdk.opcua.alarm_store import JsonAlarmStore
from sdk.opcua.alarms import AlarmBook
from sdk.opcua.audit_events import AuditEvents
from sdk.opcua.audit_nodes import AuditNodes
from sdk.opcua.audited import scoped_to
from sdk.opcua.connect import EDGE_URI_PREFIX
from sdk.opcua.history import History
from sdk.opcua.ids import node_id, qname
from sdk.opcua.renewal import CertificateWatch
from sdk.opcua.service import Service, new_server, start_listening
from sdk.opcua.values import new_instance
from sdk.package.manifest import Manifest

_log = logging.getLogger(__name__)


class Gateway(Service):
    """The Model Manager."""

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__()
        self.settings = settings
        self.server: Server | None = None

    @property
    def url(self) -> str:
        """The endpoint clients connect to."""
        return self.settings.endpoint

    async def _start(self) -> None:
        s = self.settings
        heap.limit_arenas()  # before the worker threads: transfers' chunks left tens of MiB in idle arenas
        trust = TrustStore.load_policy(s.trust_dir, s.approval_trust_dir)
        await self._check_data_dir()
        self.store = await self._stack.enter_async_context(SqliteStore.open(s.db_path))
        # The store is the gateway's audit log (append-only table); written until the store closes.
        self.audit = await self._stack.enter_async_context(AuditWriter(self.store, scoped_to(self)))
        self.monitor_store = await self._stack.enter_async_context(MonitorStore.open(s.monitor_db_path))
        self.monitor = Monitor(
            self.monitor_store,
            poll_s=s.monitor_poll_s,
            idle_poll_s=s.monitor_idle_poll_s,
            max_records=s.monitor_max_records,
            known_device=lambda device_id: device_id in self.devices.links,
            thresholds=s.monitor,
            error_rate=FigureThresholds(warning=s.error_rate_warning, alarm=s.error_rate_alarm, deadband=0.01),
            manifest_of=self._manifest_of,
        )
        self.repository = PackageRepository(self.store, s.packages_dir, trust)
        server, ns, instance_ns = await new_server(
            endpoint=s.endpoint,
            name=GATEWAY_NAME,
            application_uri=INSTANCE_URI,
            product="gateway",
            users_file=s.users_file,
            anonymous_role=s.anonymous_role,
            login_policy=s.login_policy,
            max_byte_string=s.max_byte_string,
            pki_dir=s.data_dir / "pki",
            allow_insecure=s.allow_insecure,
            certificate_roles={f"{EDGE_URI_PREFIX}*": "Engineer"},  # edge nodes register with their certificate
        )
        self.certificates = CertificateWatch(server, s.data_dir / "pki", INSTANCE_URI, GATEWAY_NAME)
        # The address space and what serves it (~1 M objects for 1,000 versions and 500 devices, as long-lived as
        # the process): built without the cyclic collector examining them again and again (sdk/heap.py).
        with heap.long_lived():
            await self._build(server, ns, instance_ns)
        self._stack.callback(heap.release)
        self.server = server
        await start_listening(self._stack, server, s.endpoint)
        self._stack.push_async_callback(self.models.release)  # before the server stops
        # Periodic jobs run late rather than not at all when the loop was busy, and only once for all missed runs.
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "misfire_grace_time": None})
        self.deployments.scheduler = self.scheduler
        self.scheduler.add_job(self._sweep, "interval", seconds=2, id="device sweep", max_instances=1)
        self.scheduler.add_job(
            self.monitor_nodes.refresh, "interval", seconds=s.monitor_figures_s, id="monitor figures", max_instances=1
        )
        # The output drift baseline of every deployment is kept (gateway/monitor/retention.py).
        self.retention = Retention(self.monitor_store, s.monitor_retention_days, keep_first=s.monitor.baseline_records)
        self.scheduler.add_job(
            self.retention.run,
            "interval",
            hours=1,
            id="monitor retention",
            max_instances=1,
            next_run_time=datetime.now(UTC) + timedelta(minutes=1),
        )
        # The server's own certificate, renewed before it expires without a restart (sdk.opcua.renewal).
        self.scheduler.add_job(
            self.certificates.check,
            "interval",
            seconds=s.certificate_check_s,
            id="certificate check",
            max_instances=1,
            next_run_time=datetime.now(UTC),
        )
        if s.backup_interval_s:
            self.scheduler.add_job(
                self.backup_database, "interval", seconds=s.backup_interval_s, id="database backup", max_instances=1
            )
        if s.sagemaker_groups:
            if s.signing_key is None:
                raise UsageError("sagemaker_groups needs signing_key: imported models are signed by the gateway")
            self.scheduler.add_job(
                self.sync_sagemaker,
                "interval",
                seconds=s.sagemaker_interval_s,
                id="sagemaker sync",
                max_instances=1,
                next_run_time=datetime.now(UTC),
            )
        self.scheduler.start()
        self._stack.callback(self.scheduler.shutdown, wait=False)
        self._spawn(self.devices.run(), "devices")
        self._spawn(self.deployments.run(), "deployments")
        _log.info("gateway serving at %s with %s", s.endpoint, self.models.describe())

    async def _build(self, server: Server, ns: Namespaces, instance_ns: int) -> None:
        """The gateway's nodes and the services behind them, from the store (before the server listens)."""
        s = self.settings
        events = await AuditEvents(server).start()
        audit_nodes = await AuditNodes.create(server, ns, instance_ns, self.store)
        self.audit.listeners += [events.raise_events, audit_nodes.written]
        # History (OPC 10000-11) and alarms (OPC 10000-9) of the Model Monitor, kept in the data folder.
        self.history = History(server, s.data_dir, period=timedelta(days=s.history_days))
        await self.history.start()
        self._stack.push_async_callback(self.history.close)
        self.alarms = AlarmBook(server, JsonAlarmStore.in_dir(s.data_dir), history=self.history)
        await self.alarms.start()
        self._stack.push_async_callback(self.alarms.stop)
        self.metrics: MetricsEndpoint | None = None
        if s.metrics_port is not None:
            self.metrics = MetricsEndpoint(s.metrics_port, s.metrics_address)
            await asyncio.to_thread(self.metrics.start)
            self._stack.callback(self.metrics.stop)
        manager = await new_instance(
            server.nodes.objects,
            server.get_node(node_id(ModelLine.MODEL_MANAGER_TYPE, ns.modelline)),
            nodeid=node_id("ModelManager", instance_ns),
            bname=qname("ModelManager", ns.modelline),
        )
        password = s.edge_password_file.read_text(encoding="utf-8").strip() if s.edge_password_file else None
        self.device_nodes = DeviceNodes(server, ns, await manager.get_child(f"{ns.modelline}:Devices"))
        self.device_nodes.new_prediction_nodes.append(lambda node: self.history.historize([node]))

        connecting = asyncio.Semaphore(s.device_connect_concurrency)  # shared by every link: batches at start

        def new_link(device_id: str, endpoint: str) -> Device:
            link = DeviceLink(
                device_id,
                endpoint,
                user=s.edge_user,
                password=password,
                pki_dir=s.data_dir / "pki",
                update_timeouts=(s.device_call_timeout_s, s.device_probe_s),
                keepalive_s=s.device_keepalive_s,
                liveness_s=s.device_liveness_s,
                session_timeout_s=s.device_session_timeout_s,
                connecting=connecting,
            )
            link.prediction_listeners.append(self.device_nodes.mirror)
            link.session_workers.append(record_collector(self.monitor))
            link.session_workers.append(audit_collector(self.store, s.audit_collect_s))
            return link

        self.devices = DeviceRegistry(self.store, new_link)
        self.devices.preparers.append(self.device_nodes.prepare)
        self.devices.listeners.append(self.device_nodes.show)
        # The sweep looks only at devices that changed since the last one, and at those Offline (whose
        # OfflineAlarm waits for offline_alarm_s): an idle fleet costs it nothing per device.
        self._to_sweep: set[str] = set()
        self._offline: set[str] = set()
        self.devices.listeners.append(self._device_changed)
        await self.devices.load()
        for link in self.devices.links.values():
            await self.device_nodes.show(link)
            await self._device_changed(link)
        self.deployments = DeploymentService(
            self.store, self.repository, self.devices, parallel_transfers=self.settings.parallel_transfers
        )
        self.deployments.listeners.append(self.monitor.deployment_changed)
        self.manager = await ManagerNodes(server, ns, manager, self.deployments, self.devices, self.device_nodes).bind()
        self.monitor_nodes = await MonitorNodes(
            server, ns, instance_ns, self.monitor, alarms=self.alarms, history=self.history, metrics=self.metrics
        ).bind()
        self.deployments.listeners.append(self.monitor_nodes.deployment_changed)
        self.operations = OperationsAlarms(
            server,
            self.alarms,
            self.monitor_nodes.node,
            self.device_nodes.folder,
            await manager.get_child(f"{ns.modelline}:Deployments"),
            s.offline_alarm_s,
        )
        self.deployments.listeners.append(lambda record, _: self.operations.deployments_changed([record]))
        stored = await self.store.deployments()
        for record in stored:
            targets = await self.store.targets(record.id)
            await self.manager.show(record, targets)
            await self.monitor.deployment_changed(record, targets)
            await self.monitor_nodes.deployment_changed(record, targets)
        await self.operations.deployments_changed(stored)
        self.models = await ModelNodes(
            server,
            ns,
            manager,
            self.repository,
            s.data_dir / "uploads",
            s.max_byte_string,
            max_package_bytes=s.max_package_bytes,
        ).bind()
        await self._report_unreadable()

    async def _manifest_of(self, model: str, version: str, sha256: str = "") -> Manifest | None:
        """The manifest of a stored model version (as signed in its package); found by the package's SHA-256 when
        the version is not a stored one (a rollback to each device's fallback)."""
        record = await self.store.model_version(model, version)
        if record is None and sha256:
            found = [r for r in await self.store.model_versions() if r.name == model and r.sha256 == sha256]
            record = found[0] if found else None
        return record.manifest if record is not None else None

    async def _report_unreadable(self) -> None:
        """Stored rows that do not validate were left out (and logged by the store); show them where a node can."""
        for bad in self.store.unreadable():
            if bad.kind == "device":
                await self.device_nodes.show_unreadable(bad.key, bad.reason)
            elif bad.kind == "deployment":
                await self.manager.show_unreadable(bad.key, bad.reason)

    async def _check_data_dir(self) -> None:
        """Hold the data folder for this process, and refuse a database that is missing or damaged.

        Starting empty on a folder whose database is gone would serve none of the stored packages
        and forget every device, silently: refusing names the recovery command instead."""
        lock = await asyncio.to_thread(files.lock_data_dir, self.settings.data_dir, "starting another")
        self._stack.callback(lock.close)
        await asyncio.to_thread(files.check_before_start, self.settings.data_dir)

    async def backup_database(self) -> Path | None:
        """Back the database up with SQLite's online backup API and keep the newest ``backup_keep``.

        A failed backup (full disk, say) is logged and tried again at the next interval; it never
        stops the gateway."""
        s = self.settings

        def backup_and_prune() -> tuple[Path, list[Path]]:  # one thread: a stop while it runs cannot split them
            made = files.backup(s.db_path, s.backups_dir)
            return made, files.prune(s.backups_dir, s.backup_keep)

        try:
            path, pruned = await asyncio.to_thread(backup_and_prune)
        except (ModelLineError, OSError) as exc:
            _log.warning("database backup into %s failed: %s", s.backups_dir, exc)
            return None
        _log.info("database backed up to %s (%d older backup(s) deleted)", path, len(pruned))
        return path

    async def _device_changed(self, link: Device) -> None:
        self._to_sweep.add(link.device_id)
        if link.view.state is DeviceState.OFFLINE:
            self._offline.add(link.device_id)
        else:
            self._offline.discard(link.device_id)

    async def _sweep(self) -> None:
        """State, LastSeen and OfflineAlarm of the devices that changed since the last sweep, and of those Offline."""
        due, self._to_sweep = self._to_sweep | self._offline, set()
        for device_id in due:
            link = self.devices.links.get(device_id)
            if link is None:
                continue
            await self.device_nodes.show(link)
            await self.operations.device_shown(link)

    async def sync_sagemaker(self) -> list[str]:
        """Import the newest Approved version of each configured group, unless it is stored; returns what was added."""
        from sdk.pull import PullTarget, pull_sagemaker  # noqa: PLC0415 - boto3: not at every gateway start
        from sdk.sources.aws import AwsOptions  # noqa: PLC0415
        from sdk.sources.sagemaker import find_model  # noqa: PLC0415

        s = self.settings
        aws = AwsOptions(region=s.sagemaker_region, endpoint_url=s.sagemaker_endpoint_url)
        identity = load_identity(s.signing_cert, s.signing_key) if s.signing_cert and s.signing_key else None
        key = load_private_key(s.signing_key) if s.signing_key and identity is None else None
        added = []
        for group in s.sagemaker_groups:
            try:
                found = await asyncio.to_thread(find_model, aws.client("sagemaker"), aws.client("s3"), group)
                if await self.store.model_version(group, f"{found.version}.0.0") is not None:
                    continue
                suffix = ".uadipkg" if identity else ".mlpkg"
                out = s.data_dir / "uploads" / f"sagemaker-{group}-{found.version}{suffix}"
                target = PullTarget(out_path=out, private_key=key, identity=identity)
                await asyncio.to_thread(pull_sagemaker, group, aws, target, found.version)
                record, new = await self.models.store_package(out, actor="sagemaker sync")
                if new:
                    added.append(f"{record.name} {record.version}")
            except ModelLineError as exc:  # one group's trouble does not stop the others, nor the gateway
                _log.warning("sagemaker sync of %s: %s", group, exc)
        return added
