"""How the Model Monitor judges its figures: windows, minimum evidence, thresholds and the Ok/Warning/Alarm rule.

Every figure (a drift score, a data quality rate, accuracy...) gets a *state*:
Ok, Warning or Alarm. The alarm layer raises OPC UA alarms from these states.

The state rule, with hysteresis so a value hovering around a threshold does not
make the alarm come and go with every batch:

- A figure where *higher is worse* (drift, error rates, MAE) goes **up** to
  Warning as soon as it reaches ``warning``, to Alarm as soon as it reaches
  ``alarm``. It comes **down** only when it has fallen below the threshold by
  ``deadband``: an Alarm at PSI >= 0.25 with deadband 0.02 clears only under
  0.23 (to Warning, or to Ok if it is also under 0.1 - 0.02 = 0.08).
- A figure where *lower is worse* (accuracy, F1) mirrors this: Warning at or
  under ``warning``, Alarm at or under ``alarm``, cleared only above the
  threshold plus ``deadband``.
- A figure without a value (not enough records in the window yet, see
  ``min_records``) keeps the state it had: no evidence, no change.
- A threshold left empty (None) is never reached: e.g. MAE has no default,
  since only the plant knows what error in the output's units is too much.

**Why a full window by default.** Plant data is not a shuffled sample: speed
follows a cycle, faults come in bursts. A window that holds only a part of a
cycle differs from a reference that holds whole cycles, and would report drift
that is not there. So drift and data quality are scored, by default, only on a
full window (``window_records``); a window must be long enough to hold the
process's normal cycles (the demo line: 100 s at 10 predictions a second).
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Level(StrEnum):
    """The state of one figure, as the alarm layer reads it."""

    OK = "Ok"
    WARNING = "Warning"
    ALARM = "Alarm"


class Task(StrEnum):
    """What a model's monitored output predicts, which decides its quality figures."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class InputReference(StrEnum):
    """What input drift compares the recent inputs with."""

    TRAINING = "training"  # the package's training reference statistics (the manifest's bins)
    DEPLOYMENT = "deployment"  # the first baseline_records inputs after deployment (quantile bins, like outputs)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FigureThresholds(_Model):
    """Warning and alarm thresholds of one figure, which way is worse, and the hysteresis band."""

    warning: float | None = None
    alarm: float | None = None
    higher_is_worse: bool = True
    deadband: float = Field(0.0, ge=0, description="How far a value must come back past a threshold to clear it.")

    @model_validator(mode="after")
    def _ordered(self) -> FigureThresholds:
        if self.warning is not None and self.alarm is not None:
            if (self.alarm < self.warning) if self.higher_is_worse else (self.alarm > self.warning):
                raise ValueError(f"alarm threshold {self.alarm} is less severe than warning {self.warning}")
        return self

    def _reached(self, value: float, threshold: float | None, shift: float) -> bool:
        if threshold is None:
            return False
        return value >= threshold - shift if self.higher_is_worse else value <= threshold + shift

    def next_level(self, previous: Level, value: float | None) -> Level:
        """The state after seeing ``value``, given the state before (the hysteresis rule above)."""
        if value is None:
            return previous
        # A level already held is kept until the value is back past its threshold by the deadband.
        alarm_shift = self.deadband if previous == Level.ALARM else 0.0
        warning_shift = self.deadband if previous in (Level.ALARM, Level.WARNING) else 0.0
        if self._reached(value, self.alarm, alarm_shift):
            return Level.ALARM
        if self._reached(value, self.warning, warning_shift):
            return Level.WARNING
        return Level.OK


_MIN_RECORDS_BY_TIME = 200


def _psi(warning: float = 0.1, alarm: float = 0.25) -> FigureThresholds:
    return FigureThresholds(warning=warning, alarm=alarm, deadband=0.02)


def _rate(warning: float, alarm: float) -> FigureThresholds:
    return FigureThresholds(warning=warning, alarm=alarm, deadband=0.01)


def _score(warning: float, alarm: float) -> FigureThresholds:
    return FigureThresholds(warning=warning, alarm=alarm, higher_is_worse=False, deadband=0.02)


class MonitorThresholds(_Model):
    """The Model Monitor's settings for figures: windows, minimum evidence and thresholds per figure."""

    window_records: int | None = Field(
        1000, ge=1, description="A window holds at most this many of the newest records (None: no count limit)."
    )
    window_seconds: float | None = Field(
        None, gt=0, description="A window holds records at most this old, by their own time (None: no age limit)."
    )
    min_records: int | None = Field(
        None,
        ge=1,
        description="Records a window needs before a drift or data quality figure is given; None: a full window "
        "(window_records), or 200 for a window limited by time only.",
    )
    min_pairs: int = Field(
        30, ge=1, description="Prediction/ground truth pairs a window needs before quality figures are given."
    )
    baseline_records: int = Field(
        1000,
        ge=10,
        description="Predictions after deployment that make the output drift baseline (the first window).",
    )
    output_bins: int = Field(10, ge=2, le=100, description="Quantile bins of a baseline made after deployment.")
    input_reference: InputReference = Field(
        InputReference.TRAINING,
        description="Input drift against the training data (default), or against the first window after "
        "deployment, for a machine whose normal range is a narrow part of the training data.",
    )
    psi_epsilon: float = Field(
        1e-4, gt=0, lt=0.01, description="Share used in place of an empty bin in the PSI formula (both sides)."
    )
    decision_threshold: float = Field(
        0.5, gt=0, lt=1, description="A probability output at or above this predicts class 1."
    )
    tasks: dict[str, Task] = Field(
        default_factory=dict, description="Model name -> task, where the rule from the manifest guesses wrong."
    )
    feedback_outputs: dict[str, str] = Field(
        default_factory=dict, description="Model name -> the output ground truth is compared with (default: first)."
    )

    input_drift: FigureThresholds = _psi()
    output_drift: FigureThresholds = _psi()
    missing_rate: FigureThresholds = _rate(0.05, 0.2)
    bad_rate: FigureThresholds = _rate(0.05, 0.2)
    out_of_range_rate: FigureThresholds = _rate(0.05, 0.2)
    accuracy: FigureThresholds = _score(0.85, 0.7)
    f1: FigureThresholds = _score(0.8, 0.6)
    mae: FigureThresholds = FigureThresholds(deadband=0.0)
    rmse: FigureThresholds = FigureThresholds(deadband=0.0)

    @model_validator(mode="after")
    def _some_window(self) -> MonitorThresholds:
        if self.window_records is None and self.window_seconds is None:
            raise ValueError("a window needs a size: window_records, window_seconds or both")
        return self

    @property
    def enough_records(self) -> int:
        """Records a window needs before a drift or data quality figure is given (``min_records`` resolved)."""
        if self.min_records is not None:
            return self.min_records
        return self.window_records if self.window_records is not None else _MIN_RECORDS_BY_TIME

    def figure(self, name: str) -> FigureThresholds:
        """The thresholds of a figure by its name (``input_drift``, ``accuracy``...)."""
        value = getattr(self, name, None)
        if not isinstance(value, FigureThresholds):
            raise KeyError(name)
        return value


class LevelTracker:
    """The current state of every figure of one monitored thing, updated value by value."""

    def __init__(self, thresholds: MonitorThresholds) -> None:
        self._thresholds = thresholds
        self.levels: dict[str, Level] = {}

    def update(self, key: str, figure: str, value: float | None) -> tuple[Level, bool]:
        """New state of ``key`` (judged as ``figure``) after ``value``, and whether it changed."""
        before = self.levels.get(key, Level.OK)
        after = self._thresholds.figure(figure).next_level(before, value)
        self.levels[key] = after
        return after, after != before
