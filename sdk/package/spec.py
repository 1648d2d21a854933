"""The optional spec file (TOML) that adds what an ONNX graph does not say.

Units, valid ranges and labels per input feature and output, a description, and
the training CSV for reference statistics. Example (examples/pump_health/spec.toml)::

    description = "Pump health from vibration, temperature, pressure, flow and speed"
    training_csv = "training.csv"      # relative to this file

    [inputs.sensors]
    label = "Pump sensor readings"
    features = [
      { name = "vibration_rms", label = "Vibration (RMS)", units = "mm/s", min = 0, max = 50 },
    ]

A feature's ``name`` becomes a browse name and a binding key, so it stays a plain
name (letters, digits, '_', '.', '-'). Its ``label`` is free printable text, and
``column`` names its column in the training CSV when that differs, as with public
datasets::

    { name = "od280_od315", label = "OD280/OD315 of diluted wines", column = "od280/od315_of_diluted_wines" }

    [outputs.anomaly_score]
    label = "Fault probability"
    min = 0
    max = 1
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sdk.errors import BuildError, NotFound
from sdk.names import first_problem
from sdk.package.manifest import Feature, Range, check_name


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MAX_LABEL = 200


class FeatureSpec(_Spec):
    """One named feature of an input tensor."""

    name: str = Field(description="Plain name: the browse name and binding key of the feature.")
    label: str | None = Field(None, description="What a person reads: any printable text.")
    column: str | None = Field(None, description="Its column in the training CSV, when not named like the feature.")
    units: str | None = None
    min: float | None = None
    max: float | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        try:
            return check_name(value, "feature name")
        except ValueError as exc:
            raise ValueError(
                f"{exc}; keep a name like this as label = {value!r} (and column = {value!r} for the training CSV)"
            ) from None

    @field_validator("label", "column")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or not value.isprintable() or len(value) > MAX_LABEL):
            raise ValueError(f"{value!r} must be printable text of 1 to {MAX_LABEL} characters")
        return value

    def to_feature(self) -> Feature:
        """The manifest form of this feature."""
        return Feature(name=self.name, label=self.label, units=self.units, valid=Range(min=self.min, max=self.max))


class TensorOverride(_Spec):
    """What the spec adds to one input or output tensor."""

    label: str | None = None
    units: str | None = None
    min: float | None = None
    max: float | None = None
    features: list[FeatureSpec] = Field(default_factory=list)


class PackageSpec(_Spec):
    """The whole spec file."""

    description: str | None = None
    training_csv: Path | None = None
    sample_count: int = Field(3, ge=0, le=100)
    histogram_bins: int = Field(10, ge=2, le=100)
    inputs: dict[str, TensorOverride] = Field(default_factory=dict)
    outputs: dict[str, TensorOverride] = Field(default_factory=dict)

    @property
    def columns(self) -> dict[str, str]:
        """Training CSV column of each input feature that names one (feature name -> column)."""
        return {f.name: f.column for t in self.inputs.values() for f in t.features if f.column is not None}

    @classmethod
    def load(cls, path: Path) -> PackageSpec:
        """Read a spec file; a relative training_csv is taken relative to the spec file."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFound(f"spec file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BuildError(f"spec file {path} is not valid TOML: {exc}") from None
        try:
            spec = cls.model_validate(raw)
        except ValidationError as exc:
            raise BuildError(f"spec file {path}: {first_problem(exc)}") from None
        if spec.training_csv is not None and not spec.training_csv.is_absolute():
            spec = spec.model_copy(update={"training_csv": path.parent / spec.training_csv})
        return spec
