"""Start and stop one component in this process N times; print RSS, open descriptors and threads after each.

    .venv/bin/python -m bench.restart_memory gateway --times 10
    .venv/bin/python -m bench.restart_memory server         # only sdk.opcua.service.new_server, started
    .venv/bin/python -m bench.restart_memory plant --fault plc   # the soak's plant, one fault N times

Finds which part keeps memory after it stops (the soak restarts its gateway in-process). Outside
pytest, a restarted gateway never grew: what kept it was pytest's log capture (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import tempfile
import threading
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def anon_kib() -> int:
    """Anonymous private memory (heap and mmap'd arenas), from /proc/self/smaps_rollup."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])
    return 0


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def tasks() -> int:
    return len(os.listdir("/proc/self/task"))


async def _gateway(root: Path, index: int) -> Callable[[], Awaitable[None]]:
    from gateway.app import Gateway
    from gateway.settings import GatewaySettings
    from tests.opcua_servers import free_port

    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=root / "gateway",
        trust_dir=root / "trust",
        anonymous_role="Engineer",
        backup_interval_s=0,
    )
    gateway = Gateway(settings)
    await gateway.__aenter__()
    return lambda: gateway.__aexit__(None, None, None)


async def _server(root: Path, index: int) -> Callable[[], Awaitable[None]]:
    from contextlib import AsyncExitStack

    from sdk.opcua.service import new_server, start_listening
    from tests.opcua_servers import free_port

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/s/"
    server, _, _ = await new_server(
        endpoint=endpoint, name="s", application_uri="urn:s", product="s", pki_dir=root / "pki"
    )
    stack = AsyncExitStack()
    await start_listening(stack, server, endpoint)
    return stack.aclose


async def _server_nopki(root: Path, index: int) -> Callable[[], Awaitable[None]]:
    from contextlib import AsyncExitStack

    from sdk.opcua.service import new_server, start_listening
    from tests.opcua_servers import free_port

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/s/"
    server, _, _ = await new_server(endpoint=endpoint, name="s", application_uri="urn:s", product="s")
    stack = AsyncExitStack()
    await start_listening(stack, server, endpoint)
    return stack.aclose


async def _bare(root: Path, index: int) -> Callable[[], Awaitable[None]]:
    """A plain asyncua Server with the standard address space, started and stopped."""
    from asyncua import Server

    from tests.opcua_servers import free_port

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{free_port()}/s/")
    await server.start()
    return server.stop


async def _bare_init(root: Path, index: int) -> Callable[[], Awaitable[None]]:
    """A plain asyncua Server initialised only (never started)."""
    from asyncua import Server

    server = Server()
    await server.init()

    async def stop() -> None:
        pass

    return stop


async def _plant(root: Path, times: int, drive: bool, fault: str) -> None:
    """The soak's plant (PLC, three edge nodes behind fault proxies, the model deployed) and its gateway
    restarted ``times`` times in this process, as the soak's gateway-restart fault does."""
    from sdk.examples import example_dir
    from tests.conftest import _signer
    from tests.soak.test_soak import _deploy, _drive_plc, _gateway_restart, _link_reset, _plc_outage, soak_plant

    signer = _signer(root, "plant")
    async with soak_plant(root, signer) as soak:
        await _deploy(soak, example_dir())
        stop = asyncio.Event()
        driver = asyncio.create_task(_drive_plc(soak, stop)) if drive else None
        report("deployed")
        for index in range(times):
            if fault == "gateway":
                await _gateway_restart(soak)
            elif fault == "plc":
                await _plc_outage(soak)
            elif fault == "link":
                await _link_reset(soak, "edge-b")
            else:
                await asyncio.sleep(float(fault))
            await asyncio.sleep(1)
            report(str(index))
        stop.set()
        if driver:
            await driver


def report(label: str) -> None:
    gc.collect()
    print(
        f"{label}: rss {rss_kib() / 1024:.1f} MiB anon {anon_kib() / 1024:.1f} MiB fds {fds()} "
        f"tasks {tasks()} threads {threading.active_count()} objects {len(gc.get_objects())}",
        flush=True,
    )


COMPONENTS = {
    "gateway": _gateway,
    "server": _server,
    "server-nopki": _server_nopki,
    "bare": _bare,
    "bare-init": _bare_init,
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("component", choices=sorted([*COMPONENTS, "plant", "plant-driven"]))
    parser.add_argument("--times", type=int, default=8)
    parser.add_argument("--fault", default="gateway", help="plant: gateway, plc, link or a pause in seconds")
    parser.add_argument("--trace", action="store_true", help="tracemalloc diff between 2nd and last round")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from sdk.keys import generate_key_pair

        files = generate_key_pair(root / "keys", name="release")
        (root / "trust").mkdir()
        (root / "trust" / files.public_path.name).write_bytes(files.public_path.read_bytes())
        if args.trace:
            tracemalloc.start(25)
        first = None
        if args.component.startswith("plant"):
            await _plant(root, args.times, drive=args.component == "plant-driven", fault=args.fault)
            return
        print(f"start: rss {rss_kib() // 1024} MiB anon {anon_kib() // 1024} MiB fds {fds()} tasks {tasks()}")
        for index in range(args.times):
            stop = await COMPONENTS[args.component](root, index)
            await stop()
            await asyncio.sleep(0.2)
            gc.collect()
            print(
                f"{index}: rss {rss_kib() / 1024:.1f} MiB anon {anon_kib() / 1024:.1f} MiB fds {fds()} "
                f"tasks {tasks()} threads {threading.active_count()} objects {len(gc.get_objects())}",
                flush=True,
            )
            if args.trace and index == 1:
                first = tracemalloc.take_snapshot()
        if first is not None:
            last = tracemalloc.take_snapshot()
            for stat in last.compare_to(first, "traceback")[:8]:
                print(stat)
                for line in stat.traceback.format()[-12:]:
                    print("   ", line)


if __name__ == "__main__":
    asyncio.run(main())
