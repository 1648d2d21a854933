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


async def test_an_unreadable_state_is_left_out_and_a_damaged_file_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "alarms.json"
    good = AlarmState(active=True, acked=False, confirmed=False, severity=700)
    path.write_text(
        '{"conditions": {"drift": ' + good.model_dump_json() + ', "offline": {"severity": 5000}}}', encoding="utf-8"
    )
    store = JsonAlarmStore(path)
    assert await store.load() == {"drift": good}
    assert store.unreadable == ["offline"]
    path.write_text("{not json", encoding="utf-8")
    store = JsonAlarmStore(path)
    assert await store.load() == {}
    assert store.unreadable == ["*"] and not path.exists()
    assert (tmp_path / "alarms.json.damaged").read_text(encoding="utf-8") == "{not json"
    with pytest.raises(ValidationError):
        AlarmState(severity=0)  # OPC 10000-5 6.4.2: 1..1000


async def test_a_state_file_that_cannot_be_written_is_a_database_error(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "alarms.json").mkdir()  # a folder where the file should be: os.replace fails
    with pytest.raises(DatabaseUnusable, match="cannot be written"):
        await JsonAlarmStore(tmp_path / "ro" / "alarms.json").save({"drift": AlarmState()})
