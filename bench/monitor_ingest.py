"""How fast the Model Monitor stores records: the collection loop and the store, without the wire.

Simulates ``--devices`` edge nodes whose queues each gain ``--rate`` prediction records a
second, collected every ``--poll-s`` seconds (the gateway's default 2 s) by one RecordIngest
per device into one monitor.sqlite3, all on one event loop as in the gateway. Reports the
records stored per second against the records made per second (the floor: 100 devices at
10 predictions a second is 1000/s), the process CPU share and the RSS. The OPC UA hop is
not in it: the end-to-end figure needs edge nodes with their record queue.

    python -m bench.monitor_ingest                      # 10, 50 and 100 devices, 10 records/s, 20 s each
    python -m bench.monitor_ingest --devices 100 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.monitor.ingest import RecordIngest
from gateway.monitor.store import MonitorStore
from sdk.monitor.records import FetchResult, PredictionRecord, RecordEnvelope


class _Queue:
    """An edge node's record queue gaining ``rate`` records a second (the record contract's method pair)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.acknowledged = 0

    def made(self) -> int:
        return int((time.monotonic() - self.start) * self.rate)

    async def fetch(self, stream: str, after: int, max_records: int) -> FetchResult:
        last = min(self.made(), after + max_records)
        now = datetime.now(UTC)
        records = [
            RecordEnvelope(
                sequence=n,
                record=PredictionRecord(
                    time=now,
                    model="pump-health",
                    version="1.0.0",
                    inputs={"vibration": 0.41, "temperature": 61.5, "pressure": 4.2, "flow": 12.0, "current": 7.7},
                    outputs={"anomaly_score": 0.12, "remaining_life": 812.0},
                    latency_ms=0.8,
                    part_key=f"S{n:08d}",
                ),
            )
            for n in range(after + 1, last + 1)
        ]
        return FetchResult("bench", records, last, self.made() > last)

    async def acknowledge(self, stream: str, queue_id: str, up_to: int) -> int:
        removed, self.acknowledged = up_to - self.acknowledged, up_to
        return removed


async def _run(devices: int, rate: float, seconds: float, poll_s: float, folder: Path) -> dict[str, float]:
    async with MonitorStore.open(folder / f"monitor-{devices}.sqlite3") as store:
        queues = [_Queue(rate) for _ in range(devices)]
        ingests = [
            RecordIngest(f"edge-{i:03d}", q, store, lambda: ["main"], poll_s=poll_s) for i, q in enumerate(queues)
        ]
        cpu0, wall0 = time.process_time(), time.monotonic()
        tasks = [asyncio.create_task(i.run()) for i in ingests]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        stored = sum(s.stored for i in ingests for s in i.stats.values())
        made = sum(q.made() for q in queues)
        behind = made - sum(q.acknowledged for q in queues)
    return {
        "made_per_s": made / wall,
        "stored_per_s": stored / wall,
        "behind": behind,
        "cpu_percent": 100 * cpu / wall,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    """Run the benchmark and print one line per device count."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="*", default=[10, 50, 100])
    parser.add_argument("--rate", type=float, default=10.0, help="prediction records per device per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--poll-s", type=float, default=2.0)
    args = parser.parse_args()
    print("devices  made/s  stored/s  behind at end  CPU %  max RSS MiB")
    with tempfile.TemporaryDirectory() as tmp:
        for devices in args.devices:
            r = asyncio.run(_run(devices, args.rate, args.seconds, args.poll_s, Path(tmp)))
            print(
                f"{devices:7d}  {r['made_per_s']:6.0f}  {r['stored_per_s']:8.0f}  {r['behind']:13.0f}  "
                f"{r['cpu_percent']:5.0f}  {r['rss_mib']:11.0f}"
            )


if __name__ == "__main__":
    main()
