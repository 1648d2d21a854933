"""The Model Monitor's figures live on a running gateway: drift alarm, history, /metrics, restart; counts and
latency against the edge node's own statistics; quality against scikit-learn (regressor and classifier).

A real gateway, a real edge node serving the pump model and a simulated PLC whose tags a seeded
generator drives: first as the deployment's baseline, then in distribution (the alarm stays quiet),
then shifted by two standard deviations (InputDriftAlarm fires). Small windows keep it quick.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import math
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from asyncua import Node, ua
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from gateway.app import Gateway
from gateway.monitor.thresholds import InputReference, MonitorThresholds
from sdk.errors import NotFound
from sdk.monitor.statistics import LATENCY_BUCKETS_MS, PipelineStatistics
from sdk.opcua.records_client import records_node
from sdk.opcua.users import hash_password
from tests.conftest import Signer
from tests.e2e.test_gateway_rollout import plant
from tests.edge_harness import FEATURES, HEALTHY, WORN, build_pump, wait_for, with_wrong_samples
from tests.interop.test_crawl_node_opcua import crawl
from tests.opcua_servers import free_port
from tests.tls import Client, GatewaySettings

pytestmark = pytest.mark.e2e

WINDOW = 200


def _users(root: Path, anonymous: str = "Engineer") -> Path:
    """Operator "op"; anonymous clients are Engineers (the test deploys), or ``anonymous``."""
    path = root / f"users-{anonymous}.toml"
    path.write_text(
        f'anonymous = "{anonymous}"\n[users.op]\nrole = "Operator"\npassword = "{hash_password("operator-pw")}"\n'
    )
    return path


def _settings(root: Path, signer: Signer) -> GatewaySettings:
    return GatewaySettings(
        users_file=_users(root),
        endpoint=f"opc.tcp://127.0.0.1:{free_port()}/gateway/",
        data_dir=root / "gateway",
        trust_dir=signer.trust_dir,
        monitor_poll_s=0.2,
        monitor_figures_s=1,
        metrics_port=free_port(),
        monitor=MonitorThresholds(
            window_records=WINDOW,
            baseline_records=WINDOW,
            output_bins=4,
            input_reference=InputReference.DEPLOYMENT,
        ),
    )


@pytest.mark.timeout(180)
async def test_input_drift_alarm_history_metrics_and_restart(
    tmp_path: Path, signer: Signer, example: Path, node_opcua: Path
) -> None:
    settings = _settings(tmp_path, signer)
    rng = np.random.default_rng(7)
    async with plant(tmp_path, signer, settings) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        manifest = await p.gateway._manifest_of("pump-health", "1.0.0")
        assert manifest is not None
        stats = {f: manifest.reference_stats[f] for f in FEATURES}
        await p.plc.write_all({f: s.mean for f, s in stats.items()})  # in distribution from the first prediction
        # One prediction per round of writes (speed is written last): no record repeats half-updated inputs.
        deployment = await p.deploy("1.0.0", ["edge-a"], binding=p.plc.binding(mode="tag", tag="speed"))
        await p.settled(deployment, "Active")
        gateway = p.gateway
        live = gateway.monitor.live[(deployment, "edge-a")]

        async def drive(records: int, shift: float) -> None:
            """Write the PLC tags until ``records`` more predictions are counted into the figures."""
            target = gateway.monitor_store
            before = (await target.figures(deployment, "edge-a")).inferences
            while (await target.figures(deployment, "edge-a")).inferences < before + records:
                # On a grid of 11 levels within one std of the mean: the baseline holds every level, so an
                # in-distribution window never falls outside its outer bins (whose expected share is 0).
                values = {f: float(s.mean + s.std * (shift + rng.integers(-5, 6) / 5)) for f, s in stats.items()}
                await p.plc.write_all(values)
                await asyncio.sleep(0.03)

        node = await p.client.nodes.objects.get_child([f"{p.ml}:ModelMonitor", f"1:{deployment}", "1:edge-a"])

        async def read(name: str) -> ua.DataValue:
            return await (await node.get_child(f"{p.ml}:{name}")).read_data_value(raise_on_bad_status=False)

        async def value(name: str) -> object:
            variant = (await read(name)).Value
            assert variant is not None
            return variant.Value

        alarm_key = f"{deployment}/edge-a/InputDriftAlarm"
        await drive(WINDOW, 0.0)  # the baseline of the deployment
        await drive(WINDOW, 0.0)  # in distribution: a full window scored, no alarm

        async def scored() -> bool:
            dv = await read("DriftScore")
            return dv.StatusCode.is_good()

        await wait_for(scored, timeout=20, what="DriftScore scored")
        await asyncio.sleep(1.5)
        assert not gateway.alarms.state(alarm_key).active, (
            gateway.alarms.state(alarm_key).message,
            live.monitor.figures().feature_drift,
        )
        assert (await read("MonitorState")).Value.Value in ("Ok", "Warning")

        await drive(WINDOW, 2.0)  # shifted by two standard deviations

        async def fired() -> bool:
            return gateway.alarms.state(alarm_key).active

        await wait_for(fired, timeout=20, what="InputDriftAlarm active")
        state = gateway.alarms.state(alarm_key)
        assert state.severity in (500, 800) and not state.acked
        assert "pump-health 1.0.0 on edge-a: input drift" in state.message
        drift = (await read("DriftScore")).Value.Value
        assert drift >= 0.1
        assert (await read("Features")).Value.Value == list(live.monitor.names)

        # History: the DriftScore series (OPC 10000-11 ReadRawModifiedDetails)
        await asyncio.sleep(1.5)
        history = await (await node.get_child(f"{p.ml}:DriftScore")).read_raw_history(
            datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1)
        )
        series = [dv.Value.Value for dv in history if dv.StatusCode.is_good()]
        assert series and series[-1] == pytest.approx((await read("DriftScore")).Value.Value)
        assert min(series) < 0.1 <= max(series)

        # /metrics matches the nodes
        url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        samples = {
            (s.name, s.labels.get("alarm", "")): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("deployment") == deployment
        }
        assert samples[("modelline_drift_score", "")] == pytest.approx(await value("DriftScore"))
        assert samples[("modelline_inferences_total", "")] == await value("InferenceCount")
        assert samples[("modelline_alarm_active", "InputDriftAlarm")] == 1.0

        condition = gateway.alarms.node(alarm_key)
        assert (await condition.read_browse_name()).Name == "InputDriftAlarm"
        score = (await node.get_child(f"{p.ml}:DriftScore")).nodeid.to_string()
        await gateway.__aexit__(None, None, None)
        # The gateway restarts: the alarm is still active and unacknowledged, the figures rebuilt from the store.
        # This time anonymous clients are Observers: alarms.mjs checks that they may not acknowledge.
        async with Gateway(settings.model_copy(update={"users_file": _users(tmp_path, "Observer")})) as again:
            state = again.alarms.state(alarm_key)
            assert state.active and not state.acked
            rebuilt = again.monitor.live[(deployment, "edge-a")].monitor.figures()
            assert rebuilt.input_drift is not None and rebuilt.input_drift >= 0.1
            async with Client(again.url) as client:
                ml = await client.get_namespace_index("http://modelline.io/UA/")
                acked = await client.nodes.objects.get_child(
                    [f"{ml}:ModelMonitor", f"1:{deployment}", "1:edge-a", "1:InputDriftAlarm", "0:AckedState", "0:Id"]
                )
                assert await acked.read_value() is False
            # A SCADA alarm list (node-opcua): ConditionRefresh replays it, an Operator acknowledges it.
            condition_id = again.alarms.node(alarm_key).nodeid.to_string()
            start = datetime.now(UTC) - timedelta(minutes=10)
            proc = await asyncio.create_subprocess_exec(
                "node",
                str(node_opcua / "alarms.mjs"),
                again.url,
                "op",
                "operator-pw",
                condition_id,
                score,
                start.isoformat(),
                datetime.now(UTC).isoformat(),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=node_opcua,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()[-3000:]
            summary = json.loads([line for line in out.decode().splitlines() if line.startswith("{")][-1])
            [shown] = [e for e in summary["replayed"] if e["ConditionId"] == condition_id]
            assert shown["ConditionName"] == "InputDriftAlarm" and shown["AckedState.Id"] is False
            assert shown["Severity"] == state.severity and shown["Message"] == state.message
            assert summary["statuses"]["observerAck"] == "BadUserAccessDenied"
            assert summary["statuses"]["ack"] == "Good"
            assert summary["acked"]["AckedState.Id"] is True
            assert again.alarms.state(alarm_key).acked and again.alarms.state(alarm_key).active
            assert summary["history"], "DriftScore history read by node-opcua"
            # Every attribute of every node, the condition instances included, reads for a generic client.
            paths = set((await crawl(node_opcua, again.url))["paths"])
            assert any(path.endswith("1:edge-a/1:InputDriftAlarm") for path in paths)


@pytest.mark.timeout(150)
async def test_quality_figures_match_scikit_learn_and_an_offline_device_raises_its_alarm(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    """Measured remaining life comes by SubmitFeedback (one SampleId retried) for half the parts and by the
    feedback tag with the part key tag for the other half; MeanAbsoluteError and RootMeanSquaredError on the
    gateway are scikit-learn's on the pairs the store joined."""
    settings = _settings(tmp_path, signer).model_copy(
        update={
            "offline_alarm_s": 1.0,
            "monitor": MonitorThresholds(min_pairs=5, feedback_outputs={"pump-health": "remaining_life"}),
        }
    )
    parts = 16
    async with plant(tmp_path, signer, settings) as p:
        assert p.plc.server is not None
        pump = await p.plc.server.nodes.objects.get_child("2:Pump1")
        life = await pump.add_variable(ua.NodeId("Pump1.MeasuredLife", 2), "2:MeasuredLife", ua.Variant(0.0))
        serial = await pump.add_variable(ua.NodeId("Pump1.Serial", 2), "2:Serial", ua.Variant(""))
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        binding = p.plc.binding(mode="tag", tag="speed") | {
            "feedback": {"endpoint": p.plc.url, "node_id": "ns=2;s=Pump1.MeasuredLife"},
            "part_key": {"endpoint": p.plc.url, "node_id": "ns=2;s=Pump1.Serial"},
        }
        deployment = await p.deploy("1.0.0", ["edge-a"], binding=binding)
        await p.settled(deployment, "Active")
        gateway = p.gateway
        rng = np.random.default_rng(11)
        for i in range(parts):
            await serial.write_value(ua.Variant(f"SN-{i}", ua.VariantType.String))
            await asyncio.sleep(0.1)
            for feature in FEATURES:
                await p.plc.write(feature, 1000.0 + i if feature == "speed" else float(rng.uniform(0.5, 2.0)))
            await asyncio.sleep(0.1)

        async def stored() -> bool:
            return (await gateway.monitor_store.figures(deployment, "edge-a")).inferences >= parts

        await wait_for(stored, timeout=30, what="the parts' predictions stored")
        truth = {f"SN-{i}": float(rng.uniform(100, 3000)) for i in range(parts)}
        async with Client(gateway.url) as client:
            client.set_user("op")
            client.set_password("operator-pw")
            monitor = await client.nodes.objects.get_child(f"{p.ml}:ModelMonitor")
            submit = await monitor.get_child(f"{p.ml}:SubmitFeedback")
            for i in range(parts // 2):
                for _ in range(2 if i == 0 else 1):  # the quality station retries SN-0: counted once
                    await monitor.call_method(
                        submit,
                        ua.Variant("edge-a", ua.VariantType.String),
                        ua.Variant("main", ua.VariantType.String),
                        ua.Variant(0, ua.VariantType.UInt64),
                        ua.Variant(datetime(1601, 1, 1, tzinfo=UTC), ua.VariantType.DateTime),
                        ua.Variant(f"SN-{i}", ua.VariantType.String),
                        ua.Variant(truth[f"SN-{i}"], ua.VariantType.Double),
                        ua.Variant(f"qs-{i}", ua.VariantType.String),
                    )
        for i in range(parts // 2, parts):  # by tag: the part key names the part the result is for
            await serial.write_value(ua.Variant(f"SN-{i}", ua.VariantType.String))
            await asyncio.sleep(0.1)
            await life.write_value(ua.Variant(truth[f"SN-{i}"], ua.VariantType.Double))
            await asyncio.sleep(0.1)

        node = await p.client.nodes.objects.get_child([f"{p.ml}:ModelMonitor", f"1:{deployment}", "1:edge-a"])

        async def counted() -> bool:
            count = await (await node.get_child(f"{p.ml}:FeedbackCount")).read_value()
            mae = await (await node.get_child(f"{p.ml}:MeanAbsoluteError")).read_data_value(raise_on_bad_status=False)
            return bool(count == parts and mae.StatusCode is not None and mae.StatusCode.is_good())

        await wait_for(counted, timeout=30, what="every result joined and the figures written")
        await asyncio.sleep(1.5)  # one more refresh: every pair counted
        pairs = await gateway.monitor_store.pairs(device="edge-a")
        assert sorted(pair.prediction.part_key or "" for pair in pairs) == sorted(truth)
        assert all(pair.value == truth[pair.prediction.part_key or ""] for pair in pairs)
        predicted = [float(pair.prediction.outputs["remaining_life"]) for pair in pairs]
        measured = [pair.value for pair in pairs]
        mae = await (await node.get_child(f"{p.ml}:MeanAbsoluteError")).read_value()
        rmse = await (await node.get_child(f"{p.ml}:RootMeanSquaredError")).read_value()
        assert mae == pytest.approx(mean_absolute_error(measured, predicted), rel=1e-9)
        assert rmse == pytest.approx(math.sqrt(mean_squared_error(measured, predicted)), rel=1e-9)

        # edge-b goes away: after offline_alarm_s its OfflineAlarm is active.
        await p.edges["edge-b"].__aexit__(None, None, None)

        async def offline() -> bool:
            return gateway.alarms.state("device/edge-b/OfflineAlarm").active

        await wait_for(offline, timeout=40, what="edge-b's OfflineAlarm")
        assert not gateway.alarms.state("device/edge-a/OfflineAlarm").active
        assert "device edge-b is offline" in gateway.alarms.state("device/edge-b/OfflineAlarm").message


@pytest.mark.timeout(150)
async def test_counts_latency_and_classifier_quality_equal_the_edge_node_and_scikit_learn(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    """The PLC runs parts through (two with a failed sensor: Bad predictions), then stops. Once collection has
    drained (the edge queue's RecordCount is 0), the gateway's InferenceCount and ErrorCount equal the edge
    pipeline's own Statistics, its latency percentiles equal the stored records' (nearest rank) and fall in the
    edge histogram's buckets; Accuracy and F1Score on the fault probability (a 0..1 output: a classifier at 0.5),
    with the measured fault by SubmitFeedback (one SampleId retried) and by the feedback tag with the part key,
    equal scikit-learn's on the pairs the store joined."""
    settings = _settings(tmp_path, signer).model_copy(
        update={"monitor": MonitorThresholds(min_pairs=5, feedback_outputs={"pump-health": "anomaly_score"})}
    )
    parts, failed = 24, {5, 17}
    async with plant(tmp_path, signer, settings) as p:
        assert p.plc.server is not None
        pump = await p.plc.server.nodes.objects.get_child("2:Pump1")
        fault = await pump.add_variable(ua.NodeId("Pump1.MeasuredFault", 2), "2:MeasuredFault", ua.Variant(0.0))
        serial = await pump.add_variable(ua.NodeId("Pump1.Serial", 2), "2:Serial", ua.Variant(""))
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg").path)
        binding = p.plc.binding(mode="tag", tag="speed") | {
            "feedback": {"endpoint": p.plc.url, "node_id": "ns=2;s=Pump1.MeasuredFault"},
            "part_key": {"endpoint": p.plc.url, "node_id": "ns=2;s=Pump1.Serial"},
        }
        await p.plc.write_all(HEALTHY)
        deployment = await p.deploy("1.0.0", ["edge-a"], binding=binding)
        await p.settled(deployment, "Active")
        gateway = p.gateway
        rng = np.random.default_rng(5)
        for i in range(parts):  # from healthy to worn: fault probabilities on both sides of 0.5
            await serial.write_value(ua.Variant(f"SN-{i}", ua.VariantType.String))
            await asyncio.sleep(0.05)
            t = float(rng.uniform(0.0, 1.0))
            values = {f: HEALTHY[f] + (WORN[f] - HEALTHY[f]) * t for f in FEATURES}
            values["speed"] = 1470.0 + i  # the trigger: written last
            for feature in FEATURES:
                status = ua.StatusCodes.BadSensorFailure if i in failed and feature == "vibration_rms" else 0
                await p.plc.write(feature, values[feature], status=status)
            await asyncio.sleep(0.1)
        truth = {f"SN-{i}": float(rng.integers(0, 2)) for i in range(parts) if i not in failed}

        edge = p.edges["edge-a"]
        async with Client(edge.url) as edge_client:
            records, edge_ml = await records_node(edge_client)
            record_count = await records.get_child(f"{edge_ml}:RecordCount")

            async def stored() -> bool:
                figures = await gateway.monitor_store.figures(deployment, "edge-a")
                return figures.inferences >= parts

            await wait_for(stored, timeout=30, what="the parts' predictions stored")
            async with Client(gateway.url) as client:
                client.set_user("op")
                client.set_password("operator-pw")
                monitor = await client.nodes.objects.get_child(f"{p.ml}:ModelMonitor")
                submit = await monitor.get_child(f"{p.ml}:SubmitFeedback")
                for key in sorted(truth)[: len(truth) // 2]:
                    for _ in range(2 if key == "SN-0" else 1):  # the quality station retries SN-0: counted once
                        await monitor.call_method(
                            submit,
                            ua.Variant("edge-a", ua.VariantType.String),
                            ua.Variant("main", ua.VariantType.String),
                            ua.Variant(0, ua.VariantType.UInt64),
                            ua.Variant(datetime(1601, 1, 1, tzinfo=UTC), ua.VariantType.DateTime),
                            ua.Variant(key, ua.VariantType.String),
                            ua.Variant(truth[key], ua.VariantType.Double),
                            ua.Variant(f"qs-{key}", ua.VariantType.String),
                        )
            for key in sorted(truth)[len(truth) // 2 :]:  # by tag: the part key names the part
                await serial.write_value(ua.Variant(key, ua.VariantType.String))
                await asyncio.sleep(0.05)
                # A new source time each: two parts with the same result are two results (value and time differ)
                await fault.write_value(
                    ua.DataValue(ua.Variant(truth[key], ua.VariantType.Double), SourceTimestamp=datetime.now(UTC))
                )
                await asyncio.sleep(0.1)

            node = await p.client.nodes.objects.get_child([f"{p.ml}:ModelMonitor", f"1:{deployment}", "1:edge-a"])

            async def read(name: str) -> ua.DataValue:
                return await (await node.get_child(f"{p.ml}:{name}")).read_data_value(raise_on_bad_status=False)

            async def drained() -> bool:
                # The PLC stopped; the edge queue is empty (everything fetched and acknowledged) and the nodes
                # show what the store holds.
                figures = await gateway.monitor_store.figures(deployment, "edge-a")
                count = (await read("InferenceCount")).Value
                feedback = (await read("FeedbackCount")).Value
                return bool(
                    await record_count.read_value() == 0
                    and count is not None
                    and count.Value == figures.inferences
                    and feedback is not None
                    and feedback.Value == len(truth)
                    and (await read("Accuracy")).StatusCode.is_good()
                )

            await wait_for(drained, timeout=30, what="collection drained and the figures written")
            await asyncio.sleep(1.5)  # one more refresh: every pair counted
            statistics_node = edge_client.get_node("ns=1;s=InferenceServer.Pipelines.main.Statistics")
            statistics = PipelineStatistics.model_validate_json(await statistics_node.read_value())

        # Counts: the edge counted every prediction of this model version (installed by this deployment).
        assert (statistics.model, statistics.version, statistics.sampled_out) == ("pump-health", "1.0.0", 0)
        # (one more Bad: the binding's first inference, before the tags' first values came)
        assert statistics.inferences >= parts and statistics.bad_count >= len(failed)
        assert (await read("InferenceCount")).Value.Value == statistics.inferences
        assert (await read("ErrorCount")).Value.Value == statistics.bad_count
        # Latency: nearest rank over the stored records' latency_ms, and within the edge histogram's bucket.
        stored_records = await gateway.monitor_store.deployment_records(deployment, "edge-a", limit=10_000)
        assert len(stored_records) == statistics.inferences
        latencies = sorted(r.latency_ms for r in stored_records if r.latency_ms > 0)
        assert len(latencies) == sum(statistics.latency_counts)
        for q, name, edge_quantile in (
            (0.5, "LatencyP50Ms", statistics.p50_ms()),
            (0.99, "LatencyP99Ms", statistics.p99_ms()),
        ):
            exact = latencies[math.ceil(q * len(latencies)) - 1]
            assert (await read(name)).Value.Value == pytest.approx(exact, rel=1e-12), name
            # The edge gives the upper bound of the bucket holding the same nearest rank.
            assert edge_quantile == LATENCY_BUCKETS_MS[bisect.bisect_left(LATENCY_BUCKETS_MS, exact)], name

        # Quality: the pairs the store joined, thresholded at 0.5, against scikit-learn.
        pairs = await gateway.monitor_store.pairs(device="edge-a")
        assert sorted(pair.prediction.part_key or "" for pair in pairs) == sorted(truth)
        assert all(pair.value == truth[pair.prediction.part_key or ""] for pair in pairs)
        predicted = [int(float(pair.prediction.outputs["anomaly_score"]) >= 0.5) for pair in pairs]
        measured = [round(pair.value) for pair in pairs]
        assert 0 < sum(predicted) < len(predicted) and 0 < sum(measured) < len(measured)  # both classes on each side
        assert (await read("Accuracy")).Value.Value == pytest.approx(accuracy_score(measured, predicted), rel=1e-12)
        assert (await read("F1Score")).Value.Value == pytest.approx(f1_score(measured, predicted), rel=1e-12)


@pytest.mark.timeout(150)
async def test_a_failed_deployment_raises_its_alarm_until_a_later_one_to_its_targets_is_active(
    tmp_path: Path, signer: Signer, example: Path
) -> None:
    v1 = build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path
    bad = with_wrong_samples(v1, tmp_path / "bad.mlpkg", signer, "1.1.0")
    async with plant(tmp_path, signer, _settings(tmp_path, signer)) as p:
        await p.push(v1)
        await p.push(bad)
        failed = await p.deploy("1.1.0", ["edge-a"])
        await p.settled(failed, "Failed")
        key = f"deployment/{failed}/FailedAlarm"

        async def raised() -> bool:
            return p.gateway.alarms.state(key).active

        await wait_for(raised, timeout=10, what="FailedAlarm active")
        state = p.gateway.alarms.state(key)
        assert state.severity == 800 and f"deployment {failed} of pump-health 1.1.0 to edge-a failed" in state.message
        node = await p.manager.get_child(
            [f"{p.ml}:Deployments", f"1:{failed}", "1:FailedAlarm", "0:ActiveState", "0:Id"]
        )
        assert await node.read_value() is True
        mended = await p.deploy("1.0.0", ["edge-a"])
        await p.settled(mended, "Active")

        async def cleared() -> bool:
            return not p.gateway.alarms.state(key).active

        await wait_for(cleared, timeout=10, what="FailedAlarm cleared")
        state = p.gateway.alarms.state(key)
        assert state.retain and not state.acked  # listed until an operator has acknowledged and confirmed it
        assert f"mended by {mended}" in state.message


@pytest.mark.timeout(240)
async def test_a_superseded_deployment_s_figures_go_once_its_alarms_are_settled(
    tmp_path: Path, signer: Signer, example: Path, node_opcua: Path
) -> None:
    """Each deployment adds figures and five conditions per target; a superseded one's leave the address space
    (and the alarm file) once no condition is retained, so a gateway does not grow with every rollout."""
    settings = _settings(tmp_path, signer)
    async with plant(tmp_path, signer, settings) as p:
        await p.push(build_pump(example, signer, tmp_path / "v1.mlpkg", "1.0.0").path)
        await p.push(build_pump(example, signer, tmp_path / "v2.mlpkg", "1.1.0").path)
        first = await p.deploy("1.0.0", ["edge-a", "edge-b"])
        await p.settled(first, "Active")
        gateway = p.gateway
        key = f"{first}/edge-a/InputDriftAlarm"
        await gateway.alarms.raise_(key, 800, "pump-health 1.0.0 on edge-a: input drift (raised by the test)")
        monitor = await p.client.nodes.objects.get_child(f"{p.ml}:ModelMonitor")

        async def shown() -> set[str]:  # what a client browsing ModelMonitor finds
            found = set()
            for deployment in await monitor.get_children_descriptions():
                try:
                    devices = await Node(monitor.session, deployment.NodeId).get_children_descriptions()
                except ua.UaStatusCodeError:  # taken down while browsing
                    continue
                found |= {f"{deployment.BrowseName.Name}/{d.BrowseName.Name}" for d in devices}
            return found

        second = await p.deploy("1.1.0", ["edge-a"])
        await p.settled(second, "Active")

        async def cleared() -> bool:
            return not gateway.alarms.state(key).active

        await wait_for(cleared, timeout=20, what="the superseded deployment's alarm cleared")
        await asyncio.sleep(2.5)  # refreshes (every second): a retained condition keeps its figures shown
        assert {f"{first}/edge-a", f"{first}/edge-b", f"{second}/edge-a"} <= await shown()
        # The first deployment's other conditions on edge-a were never raised: only the retained one holds it.
        operator = Client(gateway.url, timeout=10)
        operator.set_user("op")
        operator.set_password("operator-pw")
        async with operator:  # an operator settles it, as an alarm list does (anonymous clients may not)
            condition = operator.get_node(gateway.alarms.node(key).nodeid)
            for method in ("Acknowledge", "Confirm"):
                event_id = bytes.fromhex(gateway.alarms.state(key).event_id)
                await condition.call_method(
                    f"0:{method}", ua.Variant(event_id, ua.VariantType.ByteString), ua.LocalizedText("seen")
                )

        async def gone() -> bool:
            return f"{first}/edge-a" not in await shown()

        await wait_for(gone, timeout=20, what="the superseded figures taken down")
        assert {f"{first}/edge-b", f"{second}/edge-a"} <= await shown()  # still current on edge-b
        with pytest.raises(NotFound):
            gateway.alarms.state(key)
        saved = json.loads((settings.data_dir / "alarms.json").read_text())["conditions"]
        assert not [k for k in saved if k.startswith(f"{first}/edge-a/")]
        assert await gateway.monitor_store.figures(first, "edge-a") is not None  # the records stay in the store
        # A generic client (node-opcua) reads every node and attribute left without a problem: no reference leads
        # into the nodes taken down. (It names each node by the first path it found: the alarm area's references
        # reach a device's figures from ModelMonitor too.)
        paths = set((await crawl(node_opcua, gateway.url))["paths"])
        assert not any(f"1:{first}/1:edge-a" in path for path in paths)
        assert f"/ObjectsFolder/{p.ml}:ModelMonitor/1:{first}" in paths  # still there, for edge-b

        # A restart replays every deployment: the superseded figures come back only until the first refresh.
        await gateway.__aexit__(None, None, None)
        async with Gateway(settings) as again, Client(again.url) as client:
            ml = await client.get_namespace_index("http://modelline.io/UA/")
            monitor = await client.nodes.objects.get_child(f"{ml}:ModelMonitor")
            await wait_for(gone, timeout=20, what="the superseded figures taken down after a restart")
            assert {f"{first}/edge-b", f"{second}/edge-a"} <= await shown()
