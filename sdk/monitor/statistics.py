"""Running statistics of one pipeline, kept by the edge node and read by the gateway (PipelineType/Statistics).

The edge node keeps them in its record queue's database, so a restart does not
reset them; they start anew when the pipeline serves another model or version,
since the reference bins and the comparison belong to one version. Latency
goes to fixed logarithmic buckets (``LATENCY_BUCKETS_MS``, ten per decade from
0.01 ms to 100 s), so p50 and p99 are derived to within one bucket (about 26 %).
Each input feature is counted on the package's own reference bins
(``Manifest.reference_stats[feature].bin_edges``), with values below the first
and above the last edge counted apart, ready for a population stability index.
"""

from __future__ import annotations

import bisect
import math
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

LATENCY_BUCKETS_MS: list[float] = [round(0.01 * 10 ** (i / 10), 6) for i in range(71)]
"""Upper bounds of the latency buckets in milliseconds; one more bucket counts what exceeds the last."""


class FeatureCounts(BaseModel):
    """How one input feature's values fell on its reference bins, and how many were not usable."""

    model_config = ConfigDict(extra="forbid")

    bin_edges: list[float] = Field(default_factory=list, description="The manifest's reference bin edges.")
    counts: list[int] = Field(default_factory=list, description="Values in each bin [edge i, edge i+1).")
    below: int = Field(0, description="Values below the first edge.")
    above: int = Field(0, description="Values at or above the last edge.")
    bad: int = Field(0, description="Readings with a Bad status, or no number at all.")
    out_of_range: int = Field(0, description="Values outside the feature's valid range (or NaN, infinite).")

    def add(self, value: float) -> None:
        """Count one usable value on the bins."""
        edges = self.bin_edges
        if not edges:
            return
        if value < edges[0]:
            self.below += 1
        elif value >= edges[-1]:
            # The last bin is closed on the right, as numpy.histogram's is.
            if value == edges[-1] and self.counts:
                self.counts[-1] += 1
            else:
                self.above += 1
        else:
            self.counts[bisect.bisect_right(edges, value) - 1] += 1


class PipelineStatistics(BaseModel):
    """Counts, latency and input summaries of one pipeline since ``since`` (for one model version)."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str
    model: str = ""
    version: str = ""
    since: datetime | None = Field(None, description="When counting started for this model version.")
    updated: datetime | None = Field(None, description="When the figures last changed.")
    inferences: int = Field(0, description="Predictions made: Good, Uncertain and Bad alike.")
    bad_outputs: dict[str, int] = Field(
        default_factory=dict, description="StatusCode (as 0x hex text) -> predictions whose outputs had it."
    )
    skipped: int = Field(0, description="Triggers folded into a later inference.")
    sampled_out: int = Field(0, description="Predictions not recorded by the sample rate or the records per second.")
    latency_buckets_ms: list[float] = Field(default_factory=lambda: list(LATENCY_BUCKETS_MS))
    latency_counts: list[int] = Field(
        default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1),
        description="Inferences that ran, by latency bucket (the last counts those above the last bound).",
    )
    features: dict[str, FeatureCounts] = Field(default_factory=dict)

    def add_latency(self, latency_ms: float) -> None:
        """Count one inference that ran."""
        self.latency_counts[bisect.bisect_left(self.latency_buckets_ms, latency_ms)] += 1

    def latency_quantile_ms(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (0..1); None before any inference ran."""
        total = sum(self.latency_counts)
        if total == 0:
            return None
        rank = min(total, max(1, math.ceil(q * total)))  # nearest rank
        seen = 0
        for i, count in enumerate(self.latency_counts):
            seen += count
            if seen >= rank:
                return self.latency_buckets_ms[i] if i < len(self.latency_buckets_ms) else float("inf")
        return float("inf")

    def p50_ms(self) -> float | None:
        """Median latency, to within one bucket."""
        return self.latency_quantile_ms(0.5)

    def p99_ms(self) -> float | None:
        """99th percentile latency, to within one bucket."""
        return self.latency_quantile_ms(0.99)

    @property
    def bad_count(self) -> int:
        """Predictions whose outputs were Bad."""
        return sum(self.bad_outputs.values())
