"""The benchmark suite's bookkeeping: spreads, ratios, interleaving, the results file and RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path

from bench.suite import END, START, Rounds, Spread, refresh_results_md, write_results


def test_spread_of_samples() -> None:
    s = Spread.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.count, s.min, s.median, s.max) == (5, 1.0, 3.0, 5.0)
    assert s.p99 == 5.0


async def test_rounds_interleave_floor_and_modelline(tmp_path: Path) -> None:
    order: list[str] = []

    async def ours() -> list[float]:
        order.append("ours")
        return [2.0]

    async def floor() -> list[float]:
        order.append("floor")
        return [1.0]

    rounds = Rounds("demo", 3, quick=True)
    figure = await rounds.pair("latency", "ms", ours, floor, "bare")
    assert order == ["floor", "ours"] * 3
    assert figure.ratio == 2.0

    async def rate() -> list[float]:
        return [50.0]

    async def floor_rate() -> list[float]:
        return [100.0]

    higher = await rounds.pair("throughput", "MB/s", rate, floor_rate, "bare loop", better="higher")
    assert higher.ratio == 2.0  # twice as far from the floor either way

    path = write_results(rounds.figures, tmp_path / "results", quick=True)
    data = json.loads(path.read_text())
    assert path.name.endswith("-quick.json") and [f["name"] for f in data["figures"]] == ["latency", "throughput"]
    assert data["machine"]["cores"] and "asyncua" in data["machine"]["libraries"]

    md = tmp_path / "RESULTS.md"
    md.write_text("# Recorded results\n\nintro\n\n## Older run\n\ntext\n")
    refresh_results_md(rounds.figures, md, path)
    refresh_results_md(rounds.figures, md, path)  # replaces its own section, keeps the rest
    text = md.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert text.index(START) < text.index("## Older run") and "| demo | throughput | MB/s |" in text
