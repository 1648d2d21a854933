"""A simulated production line for the demo: an OPC UA server that looks like a pump station's PLC.

Two centrifugal pumps, each with the five tags the example model reads
(vibration, bearing temperature, discharge pressure, flow, speed), updated ten
times a second with sensor noise and a speed cycle of ``SPEED_CYCLE_S``. Pump1
runs steady: a new bearing that does not wear, no faults, so its Model Monitor
stays quiet. Pump2 has a worn bearing that wears out further and, now and then,
a fault: cavitation (pressure and flow drop, vibration rises) or an overheating
bearing; its inputs drift away from what they were when the model was deployed.
Tags are Double variables ``ns=2;s=Line1.<Pump>.<Tag>`` under Objects/Line1/<Pump>.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from asyncua import Node, Server, ua

from sdk.opcua.connect import own_certificate
from sdk.opcua.filetype import DEFAULT_MAX_BYTE_STRING
from sdk.opcua.ids import data_value, node_id, qname
from sdk.opcua.security import SECURE_POLICIES
from sdk.opcua.shelf import init_server
from sdk.opcua.transport import set_limits

TAGS = ["vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed"]
ON_PURPOSE = {
    "Pump1": "runs steady (a new bearing, no wear, no faults): its Model Monitor stays Ok",
    "Pump2": "starts with a worn bearing that wears out further: its fault probability rises on purpose "
    "and its inputs drift, which the Model Monitor raises as a drift alarm",
}
"""What the simulation does to a pump on purpose, for the screen."""
NAMESPACE = "urn:modelline:demo:line"
SPEED_CYCLE_S = 6.0
"""Period of the line's speed cycle: the Model Monitor's demo windows (15 s) hold whole cycles, so a steady pump
shows no drift (a window holding part of a cycle differs from a baseline holding whole ones)."""


@dataclass
class Pump:
    """One pump's physical state."""

    name: str
    wear: float  # 0 new .. 1 worn out
    wear_rate: float  # per second of simulated time
    faults: bool = True  # cavitation and overheating now and then
    fault: str = ""
    fault_left_s: float = 0.0
    tags: dict[str, Node] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)

    def step(self, dt: float, rng: np.random.Generator, t: float) -> dict[str, float]:
        """Advance the pump by ``dt`` seconds; returns the new tag values."""
        self.wear = min(1.0, self.wear + self.wear_rate * dt)
        if self.fault_left_s > 0:
            self.fault_left_s -= dt
            if self.fault_left_s <= 0:
                self.fault = ""
        elif self.faults and rng.random() < dt / 45.0:  # about one fault every 45 s per pump
            self.fault, self.fault_left_s = str(rng.choice(["cavitation", "overheating"])), float(rng.uniform(4, 8))
        speed = 1475.0 + 8.0 * math.sin(2 * math.pi * t / SPEED_CYCLE_S) + rng.normal(0, 2.0)
        vibration = 1.8 + 7.5 * self.wear**2.2 + rng.normal(0, 0.2)
        temperature = 48.0 + 24.0 * self.wear**1.8 + rng.normal(0, 0.4)
        pressure = 4.6 * (speed / 1475.0) ** 2 - 0.35 * self.wear + rng.normal(0, 0.03)
        flow = 118.0 * (speed / 1475.0) - 6.0 * self.wear + rng.normal(0, 0.8)
        if self.fault == "cavitation":
            vibration += 3.5
            pressure -= 1.2
            flow -= 14.0
        elif self.fault == "overheating":
            temperature += 22.0
            vibration += 1.5
        self.values = {
            "vibration_rms": max(0.0, vibration),
            "bearing_temperature": temperature,
            "discharge_pressure": max(0.0, pressure),
            "flow_rate": max(0.0, flow),
            "speed": speed,
        }
        return self.values


LINE_URI = "urn:modelline:demo:line"
LINE_NAME = "ModelLine demo line"


class LineSimulator:
    """The line's OPC UA server and its simulation loop."""

    def __init__(self, endpoint: str, seed: int = 7, period_s: float = 0.1, pki_dir: Path | None = None) -> None:
        self.endpoint = endpoint
        self.pki_dir = pki_dir  # with it the line offers secure endpoints too, as a current PLC does
        self.period_s = period_s
        self.rng = np.random.default_rng(seed)
        self.pumps = [
            Pump("Pump1", wear=0.15, wear_rate=0.0, faults=False),
            Pump("Pump2", wear=0.55, wear_rate=0.006),
        ]
        self.server = Server()
        self.ns = 2

    def node_id(self, pump: str, tag: str) -> str:
        """The NodeId text of a tag, for bindings."""
        return f"ns={self.ns};s=Line1.{pump}.{tag}"

    def binding(self, pump: str, publishing_interval_ms: int = 100) -> dict[str, object]:
        """An edge binding that feeds the example model from one pump: one prediction per simulation step
        (triggered by speed, the tag each step writes last), ten a second, which the Model Monitor's demo
        windows count on."""
        return {
            "inputs": {tag: {"endpoint": self.endpoint, "node_id": self.node_id(pump, tag)} for tag in TAGS},
            "trigger": {"mode": "tag", "tag": "speed"},
            "publishing_interval_ms": publishing_interval_ms,
        }

    async def start(self) -> LineSimulator:
        """Create the address space and start serving (call ``run`` for the simulation)."""
        await init_server(self.server)
        self.server.set_endpoint(self.endpoint)
        if self.pki_dir is not None:
            cert, key = await own_certificate(self.pki_dir, LINE_URI, LINE_NAME)
            await self.server.set_application_uri(LINE_URI)
            await self.server.load_certificate(str(cert))
            await self.server.load_private_key(str(key))
            self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity, *SECURE_POLICIES])
        await set_limits(self.server, DEFAULT_MAX_BYTE_STRING)  # like every ModelLine server (sdk.opcua.transport)
        self.server.set_server_name("ModelLine demo line (simulated PLC)")
        self.ns = await self.server.register_namespace(NAMESPACE)
        line = await self.server.nodes.objects.add_object(node_id("Line1", self.ns), qname("Line1", self.ns))
        for pump in self.pumps:
            obj = await line.add_object(node_id(f"Line1.{pump.name}", self.ns), qname(pump.name, self.ns))
            for tag in TAGS:
                pump.tags[tag] = await obj.add_variable(
                    node_id(f"Line1.{pump.name}.{tag}", self.ns),
                    qname(tag, self.ns),
                    ua.Variant(0.0, ua.VariantType.Double),
                )
        await self.tick(0.0)
        await self.server.start()
        return self

    async def stop(self) -> None:
        """Stop serving."""
        await self.server.stop()

    async def tick(self, t: float) -> None:
        """One simulation step: every tag gets a new value with its source timestamp."""
        now = datetime.now(UTC)
        for pump in self.pumps:
            for tag, value in pump.step(self.period_s, self.rng, t).items():
                await self.server.write_attribute_value(
                    pump.tags[tag].nodeid, data_value(ua.Variant(value, ua.VariantType.Double), 0, now, now)
                )

    async def run(self) -> None:
        """Simulate forever at ``period_s``."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            await asyncio.sleep(self.period_s)
            await self.tick(loop.time() - start)
