"""The targets the figures are held to (issue 14), and whether a run's figure meets its target.

A target is judged on the figure as measured: ModelLine's median or p99 against an absolute bound, or against the
floor measured in the same run. Judging is reporting, never a test: the suite prints and records the verdict,
a miss does not fail the run. Where a target is missed, ``why`` says what the profile found (bench/RESULTS.md has
the measurements behind it); a figure without a target is reported without a verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.suite import Figure


@dataclass(frozen=True)
class Target:
    """What a figure should reach, how to tell, and the known reason when it does not."""

    text: str
    met: Callable[[Figure], bool]
    why: str = ""


def _of_floor(fraction: float) -> Callable[[Figure], bool]:
    """A time at least ``fraction`` of the floor's pace: floor median / ModelLine median >= fraction."""
    return lambda f: f.ratio <= 1.0 / fraction


def _below(bound: float, *, p99: bool = False) -> Callable[[Figure], bool]:
    return lambda f: (f.modelline.p99 if p99 else f.modelline.median) < bound


def _at_most(bound: float) -> Callable[[Figure], bool]:
    return lambda f: f.modelline.median <= bound


def _latency_at_zero(f: Figure) -> bool:
    """p50 within 1.5 ms of the relay's and p99 within twice the relay's."""
    return f.modelline.median - f.floor.median <= 1.5 and f.modelline.p99 <= 2.0 * f.floor.p99


_PER_TRANSFER = (
    "the chunks move at the bare loop's pace (same encryption; their hash and the model's copy run beside the "
    "next chunk); what is left is per transfer: the temporary FileType object, CloseAndCommit's signature checks, "
    "the model's load, fsyncs and node updates"
)

TARGETS: list[tuple[str, str, Target]] = [
    # (benchmark, figure name pattern (a regular expression, matched in full), target)
    (
        "edge_latency",
        r"tag-to-prediction, interval 0 ms",
        Target("p50 <= relay + 1.5 ms, p99 <= 2x relay", _latency_at_zero),
    ),
    (
        "edge_cpu",
        r"CPU per prediction \(1 pipeline, 8 tags\)",
        Target(
            "<= 1.2x the relay",
            lambda f: f.ratio <= 1.2,
            "the edge node's sessions are signed and encrypted and this floor's are not (0.03-0.14 ms per "
            "prediction); beyond that, as in the row against the encrypted floor",
        ),
    ),
    (
        "edge_cpu",
        r"CPU per prediction, floor encrypted too",
        Target(
            "<= 1.2x the relay",
            lambda f: f.ratio <= 1.2,
            "per prediction the edge node also keeps the Model Monitor's record and statistics, the feature "
            "vector, the input mirror and DeviceHealth, and wakes its pipeline's task; the relay runs one callback",
        ),
    ),
    (
        "package_verify",
        r"build\+sign DI package.*",
        Target(
            ">= 0.8 of the floor",
            _of_floor(0.8),
            "besides the floor's hash and load, build+sign takes the model's CRC-32, runs its samples, copies it "
            "into the zip and hashes the package as it is written (its DI hash, a second digest in a thread beside "
            "the copy: on one core it adds the time of the floor's hash)",
        ),
    ),
    (
        "package_verify",
        r"verify DI package.*",
        Target(
            ">= 0.8 of the floor",
            _of_floor(0.8),
            "the file is read once for two digests (the model's signed entry digest and the whole file's DI hash, "
            "the second in a thread: on one core it adds the time of the floor's hash) and the model's copy out of "
            "the zip for onnxruntime; after a transfer all three are made as the chunks arrive",
        ),
    ),
    (
        "transfer",
        r"upload hop incl\. commit.*",
        Target(
            ">= 0.8 of the bare chunk loop",
            _of_floor(0.8),
            "at CloseAndCommit, after the signature and digest checks, the gateway loads the model once in "
            "onnxruntime (check-only, ~0.27 s for 100 MB: a quarter of the chunk loop on its own), so that a model "
            "that cannot load is refused at upload rather than on every device; " + _PER_TRANSFER,
        ),
    ),
    (
        "transfer",
        r"install hop incl\. commit.*",
        Target(">= 0.8 of the bare chunk loop", _of_floor(0.8), _PER_TRANSFER),
    ),
    (
        "transfer",
        r"push to Active, 1 device, 100 MB",
        Target(
            "< 3 s",
            _below(3.0),
            "two encrypted hops, the onnxruntime load and samples at install, and the rollout's steps",
        ),
    ),
    (
        "transfer",
        r"gateway peak RSS, wave of 100, 100 MB",
        Target(
            "< 300 MiB",
            _below(300.0),
            "per target the deployment's Model Monitor figures and five alarm conditions (~210 nodes, ~0.5 MiB, for "
            "the deployment's life), plus up to parallel_transfers (8) transfers of ~4 MiB in flight",
        ),
    ),
    (
        "fleet",
        r"\d+ idle devices: CPU per device",
        Target(
            "<= 0.02 % of a core",
            _at_most(0.02),
            "measured 45-105 s after the links came up, while the Model Monitor's safety-net record poll of each "
            "device is still backing off (2, 4, 8 ... up to 300 s; two FetchRecords per device per poll); the "
            "floor's sessions only keep their subscription alive",
        ),
    ),
    (
        "fleet",
        r"\d+ idle devices: RSS per device",
        Target(
            "<= 0.5 MiB",
            _at_most(0.5),
            "per device its Devices/<id> nodes, its link's secure session and subscription, its monitor cursor",
        ),
    ),
    ("fleet", r"1000 idle devices: gateway CPU", Target("< 20 % of a core", _below(20.0), "as CPU per device")),
    (
        "fleet",
        r"1000 devices: method call",
        Target("p99 < 50 ms", _below(50.0, p99=True), "the loaded machine's tail: compare the floor's p99"),
    ),
    (
        "fleet",
        r"rollout to 100 devices, waves of 25",
        Target(
            "< 30 s",
            _below(30.0),
            "the gateway is CPU-bound during the rollout: each target's secure update session, the per-target "
            "Model Monitor nodes and the deployment's state saves",
        ),
    ),
    ("startup", r"modelline --(version|help)", Target("< 300 ms", _below(300.0))),
    (
        "startup",
        r"edge start to first Good prediction",
        Target(
            "< 1.5 s",
            _below(1500.0),
            "before its first prediction the edge node opens its signed and encrypted endpoint and sessions (the "
            "relay's are not), verifies its installed package and loads the model with its samples: about 1.3x the "
            "bare relay's start, so where the relay alone takes more than ~1.15 s the target is out of reach",
        ),
    ),
    (
        "startup",
        r"gateway start, 1000 versions \+ 500 devices",
        Target("< 3 s", _below(3000.0), "per stored version: its nodes, its Package file's methods, its manifest"),
    ),
]


@dataclass(frozen=True)
class Verdict:
    target: str
    met: bool
    why: str

    def cell(self) -> str:
        """The RESULTS.md table's cell: the target and met / **missed**."""
        return f"{self.target}: {'met' if self.met else '**missed**'}"


def judge(figure: Figure) -> Verdict | None:
    """The figure's target and whether it is met (None: the figure has no target)."""
    for benchmark, pattern, target in TARGETS:
        if benchmark == figure.benchmark and re.fullmatch(pattern, figure.name):
            met = target.met(figure)
            return Verdict(target.text, met, "" if met else (target.why or "not analysed yet"))
    return None
