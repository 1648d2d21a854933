"""The gateway service: the Model Manager's OPC UA server over the store and the package repository.

    async with Gateway(settings) as gateway:   # store open, address space rebuilt from it, server started
        await gateway.wait_closed()

Background work (one session per edge device, one task per running deployment)
is owned by the gateway and stopped with it; apscheduler starts deployments at
their maintenance window and refreshes each device's State and LastSeen.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from asyncua import Server
from asyncua.common.instantiate_util import instantiate

from gateway.deployments.service import DeploymentService
from gateway.devices.registry import DeviceRegistry
from gateway.models.repository import PackageRepository
from gateway.opcua.devices import DeviceNodes
from gateway.opcua.manager import ManagerNodes
from gateway.opcua.models import ModelNodes
from gateway.settings import GatewaySettings
from gateway.store.sqlite import SqliteStore
from sdk.errors import ModelLineError, UsageError
from sdk.keys import TrustStore, load_private_key
from sdk.opcua.ids import node_id, qname
from sdk.opcua.service import Service, new_server
from sdk.pull import PullTarget, pull_sagemaker
from sdk.sources.aws import AwsOptions
from sdk.sources.sagemaker import find_model

_log = logging.getLogger(__name__)

MODEL_MANAGER_TYPE = 1010
INSTANCE_URI = "urn:modelline:gateway"


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
        trust = TrustStore.load(s.trust_dir)
        self.store = await self._stack.enter_async_context(SqliteStore.open(s.db_path))
        self.repository = PackageRepository(self.store, s.packages_dir, trust)
        server, ns, instance_ns = await new_server(
            endpoint=s.endpoint,
            name="ModelLine Model Manager",
            application_uri=INSTANCE_URI,
            product="gateway",
            users_file=s.users_file,
            anonymous_role=s.anonymous_role,
            max_byte_string=s.max_byte_string,
            pki_dir=s.data_dir / "pki",
        )
        manager = (
            await instantiate(
                server.nodes.objects,
                server.get_node(node_id(MODEL_MANAGER_TYPE, ns.modelline)),
                nodeid=node_id("ModelManager", instance_ns),
                bname=qname("ModelManager", ns.modelline),
            )
        )[0]
        password = s.edge_password_file.read_text(encoding="utf-8").strip() if s.edge_password_file else None
        self.devices = DeviceRegistry(self.store, user=s.edge_user, password=password)
        self.device_nodes = DeviceNodes(server, ns, await manager.get_child(f"{ns.modelline}:Devices"))
        self.devices.listeners.append(self.device_nodes.show)
        self.devices.prediction_listeners.append(self.device_nodes.mirror)
        await self.devices.load()
        for link in self.devices.links.values():
            await self.device_nodes.show(link)
        self.deployments = DeploymentService(self.store, self.repository, self.devices)
        self.manager = await ManagerNodes(server, ns, manager, self.deployments, self.devices, self.device_nodes).bind()
        for record in await self.store.deployments():
            await self.manager.show(record, await self.store.targets(record.id))
        self.models = await ModelNodes(
            server, ns, manager, self.repository, s.data_dir / "uploads", s.max_byte_string
        ).bind()
        self.server = server
        await self._stack.enter_async_context(server)
        # Periodic jobs run late rather than not at all when the loop was busy, and only once for all missed runs.
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={"coalesce": True, "misfire_grace_time": None})
        self.deployments.scheduler = self.scheduler
        self.scheduler.add_job(self._sweep, "interval", seconds=2, id="device sweep", max_instances=1)
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

    async def _sweep(self) -> None:
        """State and LastSeen of every device, including those that went quiet."""
        for link in list(self.devices.links.values()):
            await self.device_nodes.show(link)

    async def sync_sagemaker(self) -> list[str]:
        """Import the newest Approved version of each configured group, unless it is stored; returns what was added."""
        s = self.settings
        aws = AwsOptions(region=s.sagemaker_region, endpoint_url=s.sagemaker_endpoint_url)
        key = load_private_key(s.signing_key) if s.signing_key else None
        added = []
        for group in s.sagemaker_groups:
            try:
                found = await asyncio.to_thread(find_model, aws.client("sagemaker"), aws.client("s3"), group)
                if await self.store.model_version(group, f"{found.version}.0.0") is not None:
                    continue
                out = s.data_dir / "uploads" / f"sagemaker-{group}-{found.version}.mlpkg"
                target = PullTarget(out_path=out, private_key=key)
                await asyncio.to_thread(pull_sagemaker, group, aws, target, found.version)
                record, new = await self.repository.add(out, actor="sagemaker sync")
                if new:
                    await self.models.add_version(record)
                    added.append(f"{record.name} {record.version}")
            except ModelLineError as exc:  # one group's trouble does not stop the others, nor the gateway
                _log.warning("sagemaker sync of %s: %s", group, exc)
        return added
