"""Training data from a CSV: reference statistics per feature, and rows to use as samples.

The statistics are what drift detection later compares live tag values with:
count, mean, standard deviation, range, and a histogram over quantile bin edges
(each bin holds about the same share of training rows, so a shift shows up as
uneven frequencies).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sdk.errors import BuildError, NotFound
from sdk.package.manifest import FeatureStats


class TrainingData:
    """Numeric columns of a training CSV, by feature name."""

    def __init__(self, columns: dict[str, np.ndarray], source: str = "") -> None:
        self.columns = columns
        self.source = source

    @classmethod
    def read_csv(cls, path: Path, wanted: Sequence[str], columns: Mapping[str, str] | None = None) -> TrainingData:
        """Read the ``wanted`` features that the CSV has, by feature name; other columns are ignored.

        A feature's column is named like the feature unless ``columns`` maps it to another header
        (such a mapping was asked for, so a CSV without that column is an error).
        """
        column_of = {name: (columns or {}).get(name, name) for name in wanted}
        try:
            fh = open(path, newline="", encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"training CSV {path} does not exist") from None
        with fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            for name, column in column_of.items():
                if name != column and column not in header:
                    raise BuildError(
                        f"training CSV {path} has no column {column!r} (the column of feature {name}); "
                        f"its header is: {', '.join(header) or 'empty'}"
                    )
            present = [name for name in wanted if column_of[name] in header]
            if not present:
                raise BuildError(
                    f"training CSV {path} has none of the model's feature columns "
                    f"({', '.join(column_of[n] for n in wanted)}); its header is: {', '.join(header) or 'empty'}"
                )
            values: dict[str, list[float]] = {name: [] for name in present}
            for line, row in enumerate(reader, start=2):
                for name in present:
                    cell = (row.get(column_of[name]) or "").strip()
                    try:
                        values[name].append(float(cell) if cell else math.nan)
                    except ValueError:
                        raise BuildError(
                            f"training CSV {path}, line {line}, column {column_of[name]}: {cell!r} is not a number"
                        ) from None
        return cls({name: np.asarray(v, dtype=np.float64) for name, v in values.items()}, source=str(path))

    def stats(self, bins: int) -> dict[str, FeatureStats]:
        """Reference statistics for every column with at least two finite values."""
        out = {}
        for name, column in self.columns.items():
            finite = column[np.isfinite(column)]
            if finite.size < 2:
                continue
            edges = np.unique(np.quantile(finite, np.linspace(0.0, 1.0, bins + 1)))
            if edges.size < 2:  # a constant column: one bin around the value
                edges = np.array([finite[0], finite[0]])
                counts = np.array([finite.size])
            else:
                counts, _ = np.histogram(finite, bins=edges)
            out[name] = FeatureStats(
                count=int(finite.size),
                mean=float(finite.mean()),
                std=float(finite.std(ddof=1)),
                min=float(finite.min()),
                max=float(finite.max()),
                bin_edges=[float(e) for e in edges],
                frequencies=[float(c) / float(finite.size) for c in counts],
            )
        return out

    def sample_rows(self, features: Sequence[str], count: int) -> np.ndarray | None:
        """``count`` complete rows spread over the file (first, last and evenly between), or None."""
        if count == 0 or any(f not in self.columns for f in features):
            return None
        table = np.column_stack([self.columns[f] for f in features])
        complete = table[np.all(np.isfinite(table), axis=1)]
        if complete.shape[0] == 0:
            return None
        picks = np.unique(np.linspace(0, complete.shape[0] - 1, min(count, complete.shape[0])).round().astype(int))
        return np.asarray(complete[picks])
