"""The gateway's RSS around deployments to many devices: before, peak and after each, and the rise per target.

    .venv/bin/python -m bench.wave_memory --size-mb 8 --devices 48 --deployments 2
    .venv/bin/python -m bench.wave_memory --size-mb 100 --devices 100 --deployments 1   # ~10 GB RAM, ~20 GB disk
    FLEET_TRACEMALLOC=25 .venv/bin/python -m bench.wave_memory ...   # and what Python still holds after each

The gateway runs in a process of its own (``bench.fleet``'s gateway side) with the devices in its store; the
devices are real edge nodes in this process, one per device (``bench.fleet_sim``); every package is a DI
package of a MatMul model of the given size, deployed to every device in one wave (health check 0). Each
deployment supersedes the one before on every device. With FLEET_TRACEMALLOC the gateway prints, to stderr,
what was allocated and is still held since the last deployment (largest first, with its traceback).
Not part of ``python -m bench``: the suite's ``transfer`` benchmark measures one wave of 100 x 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import tempfile
import time
from pathlib import Path

from asyncua import ua

from bench.fleet import ML, Proc
from bench.fleet_sim import Fleet, connect
from bench.transfer import PeakRss, _deploy, _packages


async def measure(size_mb: int, devices: int, deployments: int) -> None:
    from sdk.file_client import upload  # noqa: PLC0415

    traced = bool(os.environ.get("FLEET_TRACEMALLOC"))
    with tempfile.TemporaryDirectory(prefix="bench-wave-") as tmp:
        folder = Path(tmp)
        versions = [f"2.0.{n}" for n in range(deployments)]
        built, trust = await asyncio.to_thread(_packages, folder, size_mb, versions)
        async with Fleet(folder / "edges", trust, per_space=1) as fleet:
            started = time.monotonic()
            await fleet.add(devices)
            print(f"{devices} edge nodes started in {time.monotonic() - started:.0f} s", flush=True)
            side = folder / "gateway-side"
            side.mkdir()
            (side / "devices.json").write_text(json.dumps(dict(fleet.urls)), encoding="utf-8")
            (side / "trust").symlink_to(trust)
            gateway = await Proc("--gateway", str(side)).start()
            try:
                await gateway.expect("online", 900)
                assert gateway.proc is not None
                url = gateway.ready_url
                client = connect(url, timeout=300)
                await client.connect()
                try:
                    ml = await client.get_namespace_index(ML)
                    manager = await client.nodes.objects.get_child(f"{ml}:ModelManager")
                    upload_node = await manager.get_child(f"{ml}:Upload")
                    for package in built:
                        await upload(client, upload_node, package, ua.Variant())
                    rss = PeakRss(gateway.proc.pid)
                    if traced:
                        await asyncio.sleep(12)  # past the gateway's first snapshot
                    for version in versions:
                        await asyncio.sleep(2)
                        if traced:
                            gateway.proc.send_signal(signal.SIGUSR1)
                            await asyncio.sleep(3)
                        before = rss.now_mib()
                        started = time.monotonic()
                        async with rss:
                            await _deploy(manager, ml, version, list(fleet.urls), devices)
                        print(
                            f"{version}: gateway RSS before {before:.0f} MiB, peak {rss.peak_mib:.0f}, after "
                            f"{rss.now_mib():.0f}; rise per target {(rss.peak_mib - before) / devices:.2f} MiB; "
                            f"{time.monotonic() - started:.0f} s",
                            flush=True,
                        )
                finally:
                    await client.disconnect()
            finally:
                await gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=8)
    parser.add_argument("--devices", type=int, default=48)
    parser.add_argument("--deployments", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(measure(args.size_mb, args.devices, args.deployments))


if __name__ == "__main__":
    main()
