"""`modelline demo`: a live production line with a gateway and two edge nodes, on this machine.

A simulated pump station (an OPC UA server like a PLC's), a gateway and two
edge nodes start on loopback ports; the example pump health model is packaged,
signed, pushed to the gateway and deployed to both nodes, each bound to one
pump's tags. Partway through, edge-1 is upgraded to a second version and rolled
back, without a gap in its predictions. Runs until Ctrl-C (or --duration).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modelline.cli.output import Output
from sdk.errors import ModelLineError

if TYPE_CHECKING:  # rich and the servers load when the demo runs, not for --help
    from rich.console import Group
    from rich.table import Table

    from modelline.demo.monitor_view import DeviceMonitor

_EXAMPLE = """Examples:
  modelline demo                               # live dashboard until Ctrl-C
  modelline demo --headless --duration 45      # a summary after 45 s (for scripts and CI)
  modelline demo --data-dir demo-data --no-upgrade

While it runs, open the printed endpoints in UaExpert or any OPC UA client:
  edge node:  Objects/InferenceServer/Pipelines/main/Outputs/anomaly_score   (and remaining_life)
              Objects/DeviceSet/edge-1/main/SoftwareUpdate                   (the DI software update)
  gateway:    Objects/ModelManager/Devices/edge-1/Predictions/main/...       (every line in one place)
              Objects/ModelMonitor/<deployment>/edge-2/...                   (inferences, drift, alarms)
              Objects/ModelManager/Deployments, Objects/ModelManager/Models
  line (PLC): Objects/Line1/Pump1/speed ..."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `demo`."""
    demo = commands.add_parser(
        "demo",
        help="run a live production line with a gateway and two edge nodes",
        formatter_class=formatter,
        description=__doc__,
        epilog=_EXAMPLE,
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep keys, packages and state here (default: a temporary folder, removed on exit)",
    )
    demo.add_argument(
        "--duration", type=float, metavar="S", help="stop by itself S seconds after the start (set-up included)"
    )
    demo.add_argument("--headless", action="store_true", help="print events and a summary instead of the dashboard")
    demo.add_argument("--no-upgrade", action="store_true", help="leave out the scripted upgrade and rollback")
    demo.set_defaults(handler=_demo)


HIGH_FAULT = 0.8
"""A fault probability from here on is shown as an alarm."""


def _fault_style(score: float) -> str:
    return "bold white on red" if score >= HIGH_FAULT else "bold yellow" if score >= 0.5 else ""


WAITING = "waiting"
_LEVEL_STYLE = {"Alarm": "bold white on red", "Warning": "bold yellow"}


def _monitor_table(monitor: dict[str, DeviceMonitor], pumps: dict[str, str]) -> Table:
    """The Model Monitor panel: what the gateway shows under ModelMonitor/<deployment>/<device>."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Model Monitor (gateway)", title_justify="left")
    for column in ("node", "pump", "deployment", "inferences", "drift", "data quality", "state", "active alarms"):
        table.add_column(column)
    for device, m in monitor.items():
        if m.drift is None:
            drift = Text(WAITING, style="dim")
        else:
            level = m.drift_level.value if m.drift_level else ""
            drift = Text(f"{m.drift:.2f} {level}", style=_LEVEL_STYLE.get(level, ""))
        if m.alarms:
            alarms = Text(", ".join(m.alarms), style=_LEVEL_STYLE["Alarm"])
        else:
            alarms = Text("none" if m.offers_drift_alarm else WAITING, style="" if m.offers_drift_alarm else "dim")
        table.add_row(
            device,
            pumps.get(device, ""),
            m.deployment,
            str(m.inferences) if m.inferences is not None else Text(WAITING, style="dim"),
            drift,
            f"{m.data_quality:.1%}" if m.data_quality is not None else Text(WAITING, style="dim"),
            Text(m.state, style=_LEVEL_STYLE.get(m.state, "")) if m.state else Text(WAITING, style="dim"),
            alarms,
        )
    return table


def _dashboard(snapshot: object) -> Group:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelline.demo.line import ON_PURPOSE

    s = snapshot  # a modelline.demo.run.Snapshot
    tags = Table(
        title="Line (simulated PLC tags)",
        title_justify="left",
        caption="\n".join(f"{pump} {why}" for pump, why in ON_PURPOSE.items()),
        caption_justify="left",
        caption_style="italic",
    )
    tags.add_column("pump")
    for tag in ("vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed"):
        tags.add_column(tag, justify="right")
    for pump, values in s.tags.items():  # type: ignore[attr-defined]
        tags.add_row(
            pump,
            *(
                f"{values.get(t, 0):.2f}"
                for t in ("vibration_rms", "bearing_temperature", "discharge_pressure", "flow_rate", "speed")
            ),
        )
    nodes = Table(title="Edge nodes (predictions)", title_justify="left")
    for column in (
        "node",
        "pump",
        "model",
        "state",
        "fault probability",
        "remaining life h",
        "inferences",
        "latency ms",
    ):
        nodes.add_column(column)
    for device, n in s.nodes.items():  # type: ignore[attr-defined]
        score, score_status = n["outputs"]["anomaly_score"]
        life, life_status = n["outputs"]["remaining_life"]
        nodes.add_row(
            device,
            n["pump"],
            n["version"],
            n["state"],
            Text(f"{score:.3f}", style=_fault_style(score)) if isinstance(score, float) else score_status,
            f"{life:.0f}" if isinstance(life, float) else life_status,
            str(n["inferences"]),
            f"{n['latency_ms']:.3f}",
        )
    monitor = _monitor_table(s.monitor, {d: n["pump"] for d, n in s.nodes.items()})  # type: ignore[attr-defined]
    rollouts = Table(title="Deployments", title_justify="left")
    for column in ("id", "version", "targets", "state"):
        rollouts.add_column(column)
    for d in s.deployments:  # type: ignore[attr-defined]
        rollouts.add_row(d["id"], d["version"], ", ".join(d["targets"]), d["state"])
    where = Text("\n".join(f"{name:<22} {url}" for name, url in s.endpoints.items()))  # type: ignore[attr-defined]
    paths = Text(
        "Browse: edge  Objects/InferenceServer/Pipelines/main/Outputs/...   "
        "gateway  Objects/ModelManager/Devices/<edge>/Predictions/main/...   "
        "Objects/ModelMonitor/<deployment>/<edge>/...",
        style="dim",
    )
    events = Text("\n".join(s.events))  # type: ignore[attr-defined]
    return Group(tags, nodes, monitor, rollouts, events, where, paths, Text("Ctrl-C to stop", style="dim"))


async def _demo(args: argparse.Namespace, out: Output) -> int:
    started = time.monotonic()  # --duration is the wall time from here to the exit
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        return await _run_demo(args, out, args.data_dir, started)
    data_dir = Path(tempfile.mkdtemp(prefix="modelline-demo-"))
    try:
        return await _run_demo(args, out, data_dir, started)
    finally:  # a temporary folder goes with the demo; --data-dir keeps one
        shutil.rmtree(data_dir, ignore_errors=True)


async def _run_demo(args: argparse.Namespace, out: Output, data_dir: Path, started: float) -> int:
    from rich.live import Live
    from rich.text import Text

    from modelline.demo.run import Demo  # the servers load only for this command

    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # expected disconnects during rollback are no news
    live_view = not args.headless and out.out.is_terminal
    live = Live(console=out.out, refresh_per_second=4, transient=False) if live_view else None
    kept = "" if args.data_dir else " (a temporary folder, removed on exit; --data-dir DIR keeps one)"
    print(f"ModelLine demo: data in {data_dir}{kept}", flush=True)

    def progress(text: str) -> None:
        if live:
            live.update(Text(f"Starting: {text}", style="dim"))
        else:
            print(text, flush=True)

    demo = Demo(
        data_dir,
        scripted=not args.no_upgrade,
        note=(lambda text: None) if live else lambda text: print(text, flush=True),
        progress=progress,
        started=started,
    )
    task = asyncio.ensure_future(
        demo.run(args.duration, (lambda snap: live.update(_dashboard(snap))) if live else None)
    )

    loop = asyncio.get_running_loop()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        # A plain signal handler, not the loop's: it runs at once even while a first start's address-space
        # build keeps the event loop busy, so the user sees the Ctrl-C taken; the loop stops the demo next.
        nonlocal stopping
        if not stopping:
            stopping = True
            if live:
                live.console.print("stopping…")
            else:
                print("stopping…", flush=True)
        loop.call_soon_threadsafe(lambda: None if task.done() else task.cancel())

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    stopped = False
    try:
        if live:
            with live:
                report = await task
        else:
            report = await task
    except asyncio.CancelledError:
        report = demo.report
        stopped = True
        print("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("\nSummary")
    for name, url in report.endpoints.items():
        print(f"  {name:<22} {url}")
    for device, count in report.predictions.items():
        print(f"  {device}: {count} predictions")
    for device, score in report.fault_probability.items():
        if isinstance(score, float):
            alarm = "  HIGH" if score >= HIGH_FAULT else ""
            print(f"  {device}: latest fault probability {score:.3f}{alarm}")
    for pump, why in _on_purpose().items():
        print(f"  {pump} {why}")
    upgrade, rollback = ("done" if ok else "not done" for ok in (report.upgraded, report.rolled_back))
    print(f"  upgrade: {upgrade}; rollback: {rollback}")
    if report.continuity is not None:
        print(f"  edge-1 during upgrade and rollback: {report.continuity.describe()}")
    for line in _monitor_summary(report):
        print(f"  {line}")
    for event in report.events:
        print(f"  {event}")
    flowing = len(report.predictions) == 2 and all(n > 0 for n in report.predictions.values())
    seamless = report.continuity is not None and report.continuity.updates > 0 and not report.continuity.not_good
    scripted_ok = args.no_upgrade or (report.upgraded and report.rolled_back and seamless)
    if stopped:  # the user stopped it: a clean stop, whatever had run by then
        return 0
    if not flowing:
        raise ModelLineError("the demo's edge nodes made no predictions (see the events above)")
    if not scripted_ok:
        if not (report.upgraded and report.rolled_back):
            raise ModelLineError(
                f"the scripted upgrade and rollback did not finish within --duration {args.duration:g}: "
                "give it at least 45 s, or --no-upgrade"
            )
        raise ModelLineError("predictions on edge-1 were interrupted or not Good during the upgrade and rollback")
    return 0


def _minutes(seconds: float) -> str:
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def _monitor_summary(report: object) -> list[str]:
    """The Model Monitor's part of the summary: each device's drift alarm, and the panel at the end."""
    from rich.console import Console

    from modelline.demo.run import DEVICES

    r = report  # a modelline.demo.run.DemoReport
    lines = []
    for device, pump in DEVICES.items():
        fired = r.drift_alarm_s.get(device)  # type: ignore[attr-defined]
        if fired is not None:
            lines.append(f"drift alarm on {device} ({pump}) at {_minutes(fired)} after start")
        elif r.drift_alarm_offered:  # type: ignore[attr-defined]
            lines.append(f"no drift alarm on {device} ({pump})")
        else:
            lines.append(f"drift alarm on {device} ({pump}): {WAITING} (the gateway shows no InputDriftAlarm)")
    for device, m in r.monitor.items():  # type: ignore[attr-defined]
        shown = r.monitor_gateway_counts.get(device)  # type: ignore[attr-defined]
        lines.append(
            f"Model Monitor {device}: {m.inferences if m.inferences is not None else WAITING} inferences on the "
            f"panel, {shown if shown is not None else WAITING} in the gateway's ModelMonitor/{m.deployment}/{device}"
        )
    if r.monitor:  # type: ignore[attr-defined]
        text = io.StringIO()
        Console(file=text, width=120, no_color=True).print(_monitor_table(r.monitor, DEVICES))  # type: ignore[attr-defined]
        lines += text.getvalue().rstrip().splitlines()
    return lines


def _on_purpose() -> dict[str, str]:
    from modelline.demo.line import ON_PURPOSE

    return ON_PURPOSE
