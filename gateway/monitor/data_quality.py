"""Data quality: how often the model's inputs were missing, Bad or outside their valid range.

For each input feature of the model, every prediction record counts as one of:

- **missing**: the record has no entry for the feature at all (the edge node
  did not record it);
- **Bad**: the reading's OPC UA StatusCode has severity Bad (OPC 10000-4
  §7.39: the two top bits are 10), or the value is None, or not a finite
  number;
- **out of range**: a usable number outside the feature's valid range in the
  manifest (``Feature.valid``: below ``min`` or above ``max``);
- otherwise fine. A value can count in one of these only: missing before Bad
  before out of range.

The **rate** of each is the share of records in the window that had it, per
feature. The **pipeline's rate** is the share of records in the window in which
*at least one* input had it: "5 % of predictions had a Bad input". A pipeline
rate is therefore at least as high as its worst feature's.

No rate is given before the window holds ``min_records`` records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sdk.monitor.records import PredictionRecord
from sdk.package.manifest import Feature

_SEVERITY_MASK = 0xC0000000
_SEVERITY_BAD = 0x80000000

KINDS = ("missing", "bad", "out_of_range")
"""The three data quality problems, in the order of the flag columns."""


def is_bad(status: int) -> bool:
    """StatusCode severity Bad (OPC 10000-4 §7.39.2: top bits 10)."""
    return status & _SEVERITY_MASK == _SEVERITY_BAD


@dataclass(frozen=True)
class InputTable:
    """The inputs of a batch of records as arrays: values (NaN where not usable) and problem flags."""

    values: np.ndarray  # records x features, float64; NaN where missing or Bad
    flags: np.ndarray  # records x features x 3 (missing, bad, out of range), bool


def input_table(records: Sequence[PredictionRecord], features: Sequence[Feature]) -> InputTable:
    """Read the features' values and problems out of ``records``."""
    rows, columns = len(records), len(features)
    values = np.full((rows, columns), np.nan)
    missing = np.zeros((rows, columns), dtype=bool)
    bad = np.zeros((rows, columns), dtype=bool)
    for i, record in enumerate(records):
        for j, feature in enumerate(features):
            if feature.name not in record.inputs:
                missing[i, j] = True
                continue
            value = record.inputs[feature.name]
            status = record.input_status.get(feature.name, 0)
            if value is None or is_bad(status) or not math.isfinite(value):
                bad[i, j] = True
            else:
                values[i, j] = float(value)
    low = np.array([-np.inf if f.valid.min is None else f.valid.min for f in features])
    high = np.array([np.inf if f.valid.max is None else f.valid.max for f in features])
    with np.errstate(invalid="ignore"):
        out_of_range = (values < low) | (values > high)
    return InputTable(values=values, flags=np.stack([missing, bad, out_of_range], axis=2))


def flag_rows(table: InputTable) -> np.ndarray:
    """Per record, the row a data quality window adds: per-feature flags then per-record "any" flags, as 0/1."""
    per_feature = table.flags.reshape(table.flags.shape[0], -1)
    any_input = table.flags.any(axis=1)
    return np.concatenate([per_feature, any_input], axis=1).astype(np.float64)


def rates(sums: np.ndarray, records: int, features: Sequence[str]) -> dict[str, dict[str, float]]:
    """Rates from a window's flag sums: {kind: {feature: rate, "": pipeline rate}}."""
    per_feature = sums[: len(features) * len(KINDS)].reshape(len(features), len(KINDS)) / records
    pipeline = sums[len(features) * len(KINDS) :] / records
    out: dict[str, dict[str, float]] = {}
    for k, kind in enumerate(KINDS):
        out[kind] = {name: float(per_feature[j, k]) for j, name in enumerate(features)}
        out[kind][""] = float(pipeline[k])
    return out
