"""Run the benchmark suite: ``python -m bench [--quick] [--only NAME ...]``.

Prints one table (figure, ModelLine, floor, ratio, spread, machine load), writes
``bench/results/<timestamp>.json`` and, for a full run, refreshes the suite's
section of ``bench/RESULTS.md``. Exits 1 if any benchmark could not run; the
figures themselves are never judged here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import traceback
from pathlib import Path

from bench.suite import Figure, Rounds, print_header, refresh_results_md, write_results

BENCHMARKS = ["edge_latency", "edge_cpu", "package_verify", "transfer", "monitor_ingest", "fleet", "startup"]
HERE = Path(__file__).resolve().parent


async def _run(names: list[str], quick: bool, rounds: int) -> tuple[list[Figure], list[str]]:
    figures: list[Figure] = []
    failed: list[str] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        collected = Rounds(name, rounds, quick)
        try:
            await module.measure(collected)
        except Exception:
            traceback.print_exc()
            print(f"{name}: could not run (see above)", file=sys.stderr, flush=True)
            failed.append(name)
        figures += collected.figures
        # What one benchmark wrote (transfer: ~20 GB of edge slots) is flushed before the next one starts, so
        # that the next one's fsyncs do not wait behind its writeback.
        await asyncio.to_thread(os.sync)
    return figures, failed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a reduced set in under two minutes (as CI runs it)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per figure (default 3, quick 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rounds = args.rounds or (2 if args.quick else 3)
    print_header()
    figures, failed = asyncio.run(_run(args.only or BENCHMARKS, args.quick, rounds))
    if figures:
        path = write_results(figures, HERE / "results", args.quick)
        print(f"figures written to {path.relative_to(HERE.parent)}")
        if not args.quick and not args.only:
            refresh_results_md(figures, HERE / "RESULTS.md", path)
            print("bench/RESULTS.md refreshed")
    if failed:
        print(f"benchmarks that could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
