"""node-opcua as a security monitor: the AuditEvent of a refused call, with the standard AuditEventType fields."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Signer
from tests.edge_harness import edge_settings, running_edge

pytestmark = [pytest.mark.interop, pytest.mark.e2e]


@pytest.mark.timeout(120)
async def test_node_opcua_receives_the_audit_event_of_a_refused_call(
    node_opcua: Path, tmp_path: Path, signer: Signer
) -> None:
    settings = edge_settings(tmp_path, signer.trust_dir, anonymous_role="Observer", device_id="line7")
    async with running_edge(settings) as node:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(node_opcua / "audit_events.mjs"),
            node.url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=node_opcua,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()[-3000:]
        lines = [line for line in out.decode().splitlines() if line.startswith("{")]
        assert lines, out.decode()[-2000:]
        summary: dict[str, Any] = json.loads(lines[-1])
        await node.audit.flush()
        [record] = [r for r in await node.audit.log.fetch("", 0, 100) if r.action == "fetch audit records"]
    assert summary["callStatus"] == "BadUserAccessDenied"
    event = summary["event"]
    assert event["SourceName"] == "Attribute/Call"
    assert event["Status"] is False
    assert event["ClientUserId"] == "anonymous"
    assert event["ServerId"] == "urn:modelline:edge:line7"
    assert event["ClientAuditEntryId"] == f"audit:{record.seq}"
    assert event["ActionTimeStamp"].startswith(record.at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "Engineer role" in event["Message"] and record.outcome == "refused"
