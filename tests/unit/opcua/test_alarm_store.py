"""The alarm state file: round trip, atomic replacement, and a damaged file refused with its name."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from sdk.errors import DatabaseUnusable
from sdk.opcua.alarm_store import AlarmState, JsonAlarmStore


async def test_states_round_trip_and_the_file_is_replaced_whole(tmp_path: Path) -> None:
    store = JsonAlarmStore(tmp_path / "alarms" / "alarms.json")
    assert await store.load() == {}
    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    active = AlarmState(active=True, acked=False, confirmed=False, severity=700, message="drift", time=when)
    await store.save({"drift": active, "offline": AlarmState()})
    await store.save({"drift": active})
    assert await JsonAlarmStore(store.path).load() == {"drift": active}
    assert [p.name for p in store.path.parent.iterdir()] == ["alarms.json"]  # no temporary file left
    assert active.retain and not AlarmState().retain
    assert AlarmState(acked=True, confirmed=False).retain  # waiting for a confirmation


async def test_a_damaged_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "alarms.json"
    path.write_text('{"conditions": {"drift": {"severity": 5000}}}')
    with pytest.raises(DatabaseUnusable, match="alarms.json"):
        await JsonAlarmStore(path).load()
    with pytest.raises(ValidationError):
        AlarmState(severity=0)  # OPC 10000-5 6.4.2: 1..1000
