"""ModelLine's NodeSet in node-opcua's own address space: an independent check of the information model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import nodesets
from nodesets.model import DEPLOYMENT_STATE, DEPLOYMENT_TYPE, OBJECT_TYPES, PIPELINE_STATE, Method, Obj, Var

pytestmark = pytest.mark.interop


def test_node_opcua_loads_the_nodeset_and_sees_every_type(node_opcua: Path) -> None:
    done = subprocess.run(
        [
            "node",
            str(node_opcua / "nodeset_check.mjs"),
            str(nodesets.MODELLINE_NODESET),
            *(t.name for t in OBJECT_TYPES),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=node_opcua,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(report["types"]) == sorted(t.name for t in OBJECT_TYPES)
    for declared in OBJECT_TYPES:
        children = sorted(c.name for c in declared.children if isinstance(c, Var | Obj | Method))
        assert report["types"][declared.name] == children, declared.name
    assert report["deployArgs"] == [
        "Model:ns=0;i=12:-1",
        "Version:ns=0;i=12:-1",
        "Targets:ns=0;i=12:1",
        "OptionsJson:ns=0;i=12:-1",
    ]
    assert report["fetchArgs"] == [
        "Stream:ns=0;i=12:-1",
        "AfterSequence:ns=0;i=9:-1",
        "MaxRecords:ns=0;i=7:-1",
        "QueueId:ns=0;i=12:-1",
        "Records:ns=0;i=12:1",
        "LastSequence:ns=0;i=9:-1",
        "MoreWaiting:ns=0;i=1:-1",
    ]
    assert report["recordsReadySuper"] == "BaseEventType"  # an event type, so any client can subscribe to it
    assert report["deviceSuper"] == "1:DeviceType"  # a DI DeviceType, so DI-aware tools recognise it
    assert report["instanceChildren"] == sorted(c.name for c in DEPLOYMENT_TYPE.children if c.rule == "M")
    assert report["deploymentStates"] == [name for name, _ in DEPLOYMENT_STATE.values]
    assert report["pipelineStates"] == [name for name, _ in PIPELINE_STATE.values]
