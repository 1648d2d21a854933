"""The binding's publishing interval: 0 (publish on change) by default for tag-triggered pipelines."""

from __future__ import annotations

import pytest

from sdk.binding import PERIODIC_PUBLISHING_INTERVAL_MS, Binding
from sdk.errors import UsageError

TAG = {"x": {"endpoint": "opc.tcp://plc:4840", "node_id": "ns=2;s=X"}}


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ({"mode": "any_change"}, 0),
        ({"mode": "tag", "tag": "x"}, 0),
        (None, 0),
        ({"mode": "periodic", "interval_ms": 1000}, PERIODIC_PUBLISHING_INTERVAL_MS),
    ],
)
def test_default_publishing_interval_follows_the_trigger(trigger: dict[str, object] | None, expected: int) -> None:
    data: dict[str, object] = {"inputs": TAG} | ({"trigger": trigger} if trigger else {})
    binding = Binding.model_validate(data)
    assert binding.publishing_interval_ms == expected
    # What the Binding variable shows parses back to the same binding (and digest).
    assert Binding.parse(binding.to_json()) == binding


@pytest.mark.parametrize("interval", [0, 10, 100, 60_000])
def test_an_explicit_publishing_interval_is_kept(interval: int) -> None:
    for trigger in ({"mode": "any_change"}, {"mode": "periodic", "interval_ms": 100}):
        binding = Binding.model_validate({"inputs": TAG, "trigger": trigger, "publishing_interval_ms": interval})
        assert binding.publishing_interval_ms == interval


@pytest.mark.parametrize("interval", [-1, 1, 9, 60_001])
def test_publishing_intervals_between_0_and_10_or_out_of_range_are_refused(interval: int) -> None:
    with pytest.raises(UsageError, match="publishing_interval_ms"):
        Binding.parse(f'{{"inputs": {{}}, "publishing_interval_ms": {interval}}}')
