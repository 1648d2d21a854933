"""`modelline monitor` and `modelline monitor export` on a running plant: a PLC feeding two edge nodes, the
gateway collecting their prediction records, results sent back with SubmitFeedback over OPC UA.

The table's counts are the store's, and an export (CSV, Parquet, uploaded to S3 on moto) holds exactly
the stored records with their results, read while the gateway runs.
"""

from __future__ import annotations

import asyncio
import csv
import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from asyncua import ua

from tests.aws_harness import REGION, aws_client
from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import Plant, plant
from tests.edge_harness import HEALTHY, build_pump, wait_for
from tests.opcua_servers import free_port
from tests.processes import MODELLINE, run_modelline
from tests.tls import GatewaySettings

pytestmark = pytest.mark.e2e

S, U64, DT, D = ua.VariantType.String, ua.VariantType.UInt64, ua.VariantType.DateTime, ua.VariantType.Double
DEVICES = ("edge-a", "edge-b")


async def _submit(p: Plant, device: str, sequence: int, value: float, sample_id: str) -> bool:
    monitor = await p.client.nodes.objects.get_child(f"{p.ml}:ModelMonitor")
    return bool(
        await monitor.call_method(
            f"{p.ml}:SubmitFeedback",
            ua.Variant(device, S),
            ua.Variant("main", S),
            ua.Variant(sequence, U64),
            ua.Variant(datetime(1601, 1, 1, tzinfo=UTC), DT),
            ua.Variant("", S),
            ua.Variant(value, D),
            ua.Variant(sample_id, S),
        )
    )


async def _all_collected(p: Plant) -> dict[str, int] | None:
    """Each device's stored predictions, once the gateway holds every record its edge node made, and the
    edge nodes made none for half a second."""
    before = {d: p.edges[d].records.last_sequence("main") for d in DEVICES}
    await asyncio.sleep(0.5)
    counts = {}
    for device in DEVICES:
        made = p.edges[device].records.last_sequence("main")
        stored = (await p.gateway.monitor_store.counts(device, "main"))["predictions"]
        if made < 10 or stored != made or made != before[device]:
            return None
        counts[device] = stored
    return counts


async def _stored(p: Plant, device: str | None = None) -> set[tuple[str, str, int]]:
    return {
        (d, "main", sequence)
        for d in DEVICES
        if device in (None, d)
        for _, sequence in await p.gateway.monitor_store.sequences(d, "main")
    }


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


async def _cli(*argv: str, expect: int = 0) -> tuple[str, str]:
    code, out, err = await run_modelline(*argv, timeout=60)
    assert code == expect, f"modelline {' '.join(argv)}: exit {code}\n{out[-1500:]}\n{err[-1500:]}"
    return out, err


@pytest.mark.timeout(120)
async def test_monitor_shows_the_stores_counts_and_export_holds_every_record(
    tmp_path: Path, signer: Signer, example: Path, aws: str
) -> None:
    settings = GatewaySettings(
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=tmp_path / "gateway",
        trust_dir=signer.trust_dir,
        anonymous_role="Engineer",
        monitor_poll_s=0.2,
        monitor_figures_s=1,
    )
    async with plant(tmp_path, signer, settings) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        deployment = await p.deploy("1.0.0", list(DEVICES))
        await p.settled(deployment, "Active")
        for i in range(12):
            await p.plc.write("speed", HEALTHY["speed"] + i)
            await p.plc.write("flow_rate", HEALTHY["flow_rate"] - i / 10)
            await asyncio.sleep(0.1)
        counts = await wait_for(lambda: _all_collected(p), timeout=30, what="every record stored by the gateway")
        assert counts is not None
        assert await _submit(p, "edge-a", 2, 870.0, "qs-1")
        assert await _submit(p, "edge-a", 3, 860.0, "qs-2")
        figures = {d: await p.gateway.monitor_store.figures(deployment, d) for d in DEVICES}
        assert figures["edge-a"].feedback == 2

        async def shown() -> bool:  # the figures job wrote what the store says
            node = await p.client.nodes.objects.get_child(
                [f"{p.ml}:ModelMonitor", f"1:{deployment}", "1:edge-a", f"{p.ml}:FeedbackCount"]
            )
            return bool(await node.read_value() == 2)

        await wait_for(shown, timeout=10, what="FeedbackCount 2 on the ModelMonitor")

        # modelline monitor: one row per (deployment, device), counts equal to the store's
        # (an edge node may record a prediction more at any time, when its PLC subscription delivers again:
        # what a command shows lies between the store before and after it, equal to both when nothing came)
        out, _ = await _cli("monitor", "--gateway", p.gateway.url, "--json")
        after = {d: await p.gateway.monitor_store.figures(deployment, d) for d in DEVICES}
        rows = {r["device"]: r for r in json.loads(out)["devices"]}
        assert set(rows) == set(DEVICES)
        for device, row in rows.items():
            f, g = figures[device], after[device]
            assert (row["deployment"], row["model"], row["version"]) == (deployment, "pump-health", "1.0.0")
            assert f.inferences <= row["inferences"] <= g.inferences
            assert (row["errors"], row["feedback"]) == (f.errors, f.feedback) == (g.errors, g.feedback)
            if g.inferences == f.inferences:
                assert row["latency_p50_ms"] == pytest.approx(f.latency_p50_ms)
            assert row["error_rate"] == pytest.approx(row["errors"] / row["inferences"])
            assert row["drift_score"] == "waiting" or isinstance(row["drift_score"], float)
        out, _ = await _cli("monitor", "--gateway", p.gateway.url, "--device", "edge-b")
        assert "edge-b" in out and "edge-a" not in out and "Active alarms" in out and deployment in out

        # the alarm list: the gateway's own InputDriftAlarm on ModelMonitor/<deployment>/<device>, raised by its
        # alarm book (the figures here are too few for a verdict, so the monitor leaves it as set), then cleared
        book = p.gateway.alarms
        key = f"{deployment}/edge-a/InputDriftAlarm"
        await book.raise_(key, 700, "input drift 0.31 on speed")
        out, _ = await _cli("monitor", "--gateway", p.gateway.url, "--json")
        shown_now = json.loads(out)
        assert [r["device"] for r in shown_now["devices"]] == list(DEVICES)  # the condition is no device
        (alarm,) = [{k: v for k, v in a.items() if k != "source"} for a in shown_now["alarms"]]
        assert alarm == {
            "deployment": deployment,
            "device": "edge-a",
            "condition": "InputDriftAlarm",
            "active": True,
            "acked": False,
            "severity": 700,
            "message": "input drift 0.31 on speed",
        }
        await book.clear(key, "input drift back to 0.05")
        out, _ = await _cli("monitor", "--gateway", p.gateway.url)
        assert "InputDriftAlarm (cleared)" in out and "input drift back to 0.05" in out

        # --watch: a document per refresh until Ctrl-C, then exit 130 like every command
        watch = await asyncio.create_subprocess_exec(
            MODELLINE, "monitor", "--gateway", p.gateway.url, "--watch", "--interval", "0.2", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert watch.stdout is not None
        refreshes = [json.loads(await asyncio.wait_for(watch.stdout.readline(), 30)) for _ in range(3)]
        assert all({r["device"] for r in doc["devices"]} == set(DEVICES) for doc in refreshes)
        watch.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(watch.wait(), 30) == 130

        # modelline monitor export, CSV: every stored record once, results joined, while the gateway runs
        data_dir = str(settings.data_dir)
        csv_file = tmp_path / "all.csv"
        before = await _stored(p)
        out, _ = await _cli("monitor", "export", "--data-dir", data_dir, "-o", str(csv_file), "--json")
        got = _csv(csv_file)
        exported = [(r["device"], r["pipeline"], int(r["sequence"])) for r in got]
        assert json.loads(out)["rows"] == len(got) == len(set(exported))  # each record once
        assert before <= set(exported) <= await _stored(p) and len(before) >= sum(counts.values())
        results = {(r["device"], int(r["sequence"])): r["feedback"] for r in got if r["feedback"]}
        assert results == {("edge-a", 2): "870.0", ("edge-a", 3): "860.0"}
        assert {"input.speed", "input.flow_rate", "output.anomaly_score"} <= set(got[0])

        # Parquet of one device, uploaded to S3 (moto): the same bytes
        s3 = aws_client("s3", aws)
        s3.create_bucket(Bucket="retraining", CreateBucketConfiguration={"LocationConstraint": REGION})
        parquet = tmp_path / "edge-b.parquet"
        argv = ["monitor", "export", "--data-dir", data_dir, "-o", str(parquet), "--device", "edge-b"]
        out, _ = await _cli(*argv, "--to", "s3://retraining/pump-health/", "--endpoint-url", aws, "--region", REGION)
        out = out.replace("\n", "")
        table: dict[str, list[Any]] = pq.read_table(parquet).to_pydict()
        assert f"{len(table['sequence'])} record(s) written" in out
        assert "uploaded to s3://retraining/pump-health/edge-b.parquet" in out
        in_file = {("edge-b", "main", s) for s in table["sequence"]}
        assert {r for r in before if r[0] == "edge-b"} <= in_file <= await _stored(p, "edge-b")
        assert set(table["device"]) == {"edge-b"} and all(v is None for v in table["feedback"])
        body = s3.get_object(Bucket="retraining", Key="pump-health/edge-b.parquet")["Body"].read()
        assert body == parquet.read_bytes()

        # a time filter: predictions at or after the since time, before the until time
        times = sorted(r["time"] for r in got if r["device"] == "edge-a")
        since, until = times[3], times[-2]
        window = tmp_path / "window.csv"
        argv = ["monitor", "export", "--data-dir", data_dir, "-o", str(window), "--device", "edge-a"]
        await _cli(*argv, "--since", since, "--until", until)
        assert sorted(r["time"] for r in _csv(window)) == [t for t in times if since <= t < until]

        # nothing matches: the header alone; refusals say why
        empty = tmp_path / "empty.csv"
        out, _ = await _cli("monitor", "export", "--data-dir", data_dir, "-o", str(empty), "--model", "other")
        assert "no records match" in out and empty.read_text().startswith("device,pipeline,sequence")
        assert len(empty.read_text().splitlines()) == 1
        _, err = await _cli("monitor", "export", "--data-dir", str(tmp_path), "-o", str(empty), expect=4)
        assert err.startswith("modelline: no monitor database at")
        _, err = await _cli("monitor", "export", "--data-dir", data_dir, "-o", str(empty), "--since", "soon", expect=2)
        assert "is not an ISO 8601 time" in err
