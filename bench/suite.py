"""The benchmark suite: every figure next to its floor, measured in the same run, rounds interleaved.

A benchmark is a module under ``bench/`` with ``async def measure(rounds: Rounds) -> None``
that calls ``rounds.pair(...)`` once per figure: the ModelLine side and the floor
side run alternately, round after round, so a burst of load from elsewhere on
the machine hits both. Figures are printed, written as JSON and recorded in
RESULTS.md; they are never asserted as timings. A benchmark that cannot run
(an exception) fails the suite.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Literal

from bench.targets import judge

Sampler = Callable[[], Awaitable[list[float]]]
"""One round of one side: returns the samples it measured (one or many)."""

LIBRARIES = ("asyncua", "onnxruntime", "onnx", "numpy", "pydantic", "aiosqlite", "cryptography")


@dataclass(frozen=True)
class Spread:
    """min / median / p99 / max of a side's samples over every round."""

    count: int
    min: float
    median: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return cls(len(ordered), ordered[0], statistics.median(ordered), p99, ordered[-1])


@dataclass(frozen=True)
class Figure:
    """One measured figure: ModelLine's spread, its floor's spread and what each is."""

    benchmark: str
    name: str
    unit: str
    better: Literal["lower", "higher"]
    modelline: Spread
    floor: Spread
    floor_name: str
    load: tuple[float, float]  # 1-minute load average before and after

    @property
    def ratio(self) -> float:
        """ModelLine's median over the floor's (for 'higher is better' figures: floor over ModelLine), so 1.0 is
        at the floor and larger is further from it either way."""
        if self.better == "lower":
            return self.modelline.median / self.floor.median if self.floor.median else float("inf")
        return self.floor.median / self.modelline.median if self.modelline.median else float("inf")


@dataclass
class Rounds:
    """What a benchmark is given: how many interleaved rounds to run, and where its figures go."""

    benchmark: str
    count: int
    quick: bool
    figures: list[Figure] = field(default_factory=list)

    async def pair(
        self,
        name: str,
        unit: str,
        modelline: Sampler,
        floor: Sampler,
        floor_name: str,
        better: Literal["lower", "higher"] = "lower",
    ) -> Figure:
        """Run ``floor`` then ``modelline`` ``count`` times, alternating, and record the figure."""
        before = os.getloadavg()[0]
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(self.count):
            theirs += await floor()
            ours += await modelline()
        figure = Figure(
            self.benchmark,
            name,
            unit,
            better,
            Spread.of(ours),
            Spread.of(theirs),
            floor_name,
            (before, os.getloadavg()[0]),
        )
        self.figures.append(figure)
        print(_row(figure), flush=True)
        return figure


def timed_ms(fn: Callable[[], Awaitable[object]]) -> Sampler:
    """A sampler that times one call of ``fn`` in milliseconds."""

    async def sample() -> list[float]:
        start = time.perf_counter()
        await fn()
        return [(time.perf_counter() - start) * 1000.0]

    return sample


HEADER = (
    f"{'benchmark':<16} {'figure':<38} {'unit':<8} {'ModelLine':>10} {'floor':>10} {'ratio':>6}  "
    f"{'min/median/p99/max (ModelLine)':<34} load"
)


def _row(f: Figure) -> str:
    m = f.modelline
    spread = f"{m.min:.3g}/{m.median:.3g}/{m.p99:.3g}/{m.max:.3g}"
    verdict = judge(f)
    return (
        f"{f.benchmark:<16} {f.name:<38} {f.unit:<8} {m.median:>10.4g} {f.floor.median:>10.4g} {f.ratio:>5.2f}x  "
        f"{spread:<34} {f.load[0]:.1f}->{f.load[1]:.1f}"
        + (f"  target {verdict.target}: {'met' if verdict.met else 'MISSED'}" if verdict else "")
    )


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "libraries": versions,
        "commit": commit.stdout.strip(),
    }


def write_results(figures: list[Figure], out_dir: Path, quick: bool) -> Path:
    """bench/results/<timestamp>[-quick].json: the machine and every figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{stamp}{'-quick' if quick else ''}.json"
    data = {"time": stamp, "quick": quick, "machine": machine(), "figures": [_as_dict(f) for f in figures]}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def _as_dict(f: Figure) -> dict[str, object]:
    data = asdict(f)
    data["ratio"] = f.ratio
    verdict = judge(f)
    data["target"] = asdict(verdict) if verdict else None
    return data


START, END = "<!-- bench suite: start -->", "<!-- bench suite: end -->"


def refresh_results_md(figures: list[Figure], results_md: Path, json_path: Path) -> None:
    """Replace the suite's section of RESULTS.md (between its markers) with this run's table."""
    m = machine()
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())  # type: ignore[attr-defined]
    lines = [
        START,
        "## Benchmark suite (`python -m bench`): every figure next to its floor, same run",
        "",
        f"Run {json_path.stem} on {m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}, {libs}; "
        f"commit {m['commit']}. Ratio: ModelLine's median over the floor's (floor over ModelLine for rates), "
        "1.00x is at the floor. Raw figures: `bench/results/`.",
        "",
        "| benchmark | figure | unit | ModelLine median | floor median | ratio | ModelLine min / p99 / max | floor "
        "| target |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    misses: list[str] = []
    for f in figures:
        verdict = judge(f)
        lines.append(
            f"| {f.benchmark} | {f.name} | {f.unit} | {f.modelline.median:.4g} | {f.floor.median:.4g} | "
            f"{f.ratio:.2f}x | {f.modelline.min:.3g} / {f.modelline.p99:.3g} / {f.modelline.max:.3g} | "
            f"{f.floor_name} | {verdict.cell() if verdict else '-'} |"
        )
        if verdict and not verdict.met:
            misses.append(f"- {f.benchmark}, {f.name} ({verdict.target}): {verdict.why}.")
    if misses:
        lines += ["", "Targets missed in this run, and the cause the profiles found:", "", *misses]
    lines.append(END)
    section = "\n".join(lines)
    text = results_md.read_text(encoding="utf-8") if results_md.exists() else "# Recorded results\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        first_section = text.find("\n## ")
        text = (
            (text + "\n" + section + "\n")
            if first_section < 0
            else (text[: first_section + 1] + section + "\n" + text[first_section:])
        )
    results_md.write_text(text, encoding="utf-8")


def print_header() -> None:
    """The table's header line."""
    print(HEADER, flush=True)
    sys.stdout.flush()
