"""The benchmark suite's bookkeeping: spreads, ratios, interleaving, the results file and RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path

from bench.suite import END, START, Figure, Rounds, Spread, refresh_results_md, write_results
from bench.targets import Verdict, judge


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


def _figure(benchmark: str, name: str, ours: list[float], floor: list[float]) -> Figure:
    return Figure(benchmark, name, "ms", "lower", Spread.of(ours), Spread.of(floor), "floor", (0.0, 0.0))


def test_figures_are_judged_against_their_targets(tmp_path: Path) -> None:
    # latency at interval 0: p50 within 1.5 ms of the relay's and p99 within twice the relay's
    near = _figure("edge_latency", "tag-to-prediction, interval 0 ms", [2.0] * 99 + [3.0], [1.0] * 99 + [2.0])
    far_tail = _figure("edge_latency", "tag-to-prediction, interval 0 ms", [2.0] * 90 + [9.0] * 10, [1.0] * 100)
    assert (judge(near), judge(far_tail)) == (
        Verdict("p50 <= relay + 1.5 ms, p99 <= 2x relay", True, ""),
        Verdict("p50 <= relay + 1.5 ms, p99 <= 2x relay", False, "not analysed yet"),
    )
    # a hop at 0.8 of its floor's pace meets ">= 0.8", one slower misses and says why
    assert judge(_figure("transfer", "upload hop incl. commit, 100 MB", [1.25], [1.0])) == Verdict(
        ">= 0.8 of the bare chunk loop", True, ""
    )
    slow = judge(_figure("transfer", "install hop incl. commit, 100 MB", [1.3], [1.0]))
    assert slow is not None and not slow.met and "per transfer" in slow.why
    # absolute bounds on the median or the p99; a figure without a target has no verdict
    late = judge(_figure("startup", "gateway start, 1000 versions + 500 devices", [3100.0], [500.0]))
    assert late is not None and not late.met
    assert judge(_figure("startup", "gateway start, 100 versions + 50 devices", [3100.0], [500.0])) is None
    tail = judge(_figure("fleet", "1000 devices: method call", [1.0] * 98 + [60.0] * 2, [1.0]))
    assert tail is not None and not tail.met

    figures = [near, far_tail, _figure("edge_cpu", "predictions/s per core (1 pipeline, 8 tags)", [1.0], [2.0])]
    md = tmp_path / "RESULTS.md"
    path = write_results(figures, tmp_path / "results", quick=False)
    assert [f["target"] and f["target"]["met"] for f in json.loads(path.read_text())["figures"]] == [True, False, None]
    refresh_results_md(figures, md, path)
    text = md.read_text()
    assert "| p50 <= relay + 1.5 ms, p99 <= 2x relay: met |" in text and "**missed** |" in text
    assert "Targets missed in this run" in text and text.count("\n- edge_latency, tag-to-prediction") == 1
