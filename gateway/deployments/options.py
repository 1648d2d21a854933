"""OptionsJson of Deploy, as a client sends it and as a deployment record keeps it.

The record's ``options_json`` is validated by ``StoredOptions`` when it is
written and again when it is read, so a value that could not be read back (an
infinite timeout stored as null, an unknown key) is refused before anything is
stored instead of stopping the gateway at its next start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from sdk.binding import Binding
from sdk.errors import UsageError
from sdk.names import Name, first_problem

MAX_TIMEOUT_S = 86_400.0  # the longest a device may wait for Confirm (as the edge slot allows)


class DeployOptions(BaseModel):
    """OptionsJson of Deploy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    binding: Binding | None = Field(None, description="Input binding set on every target after the install.")
    slot: Name | None = Field(None, description="Model slot on the devices; needed only when they have several.")
    confirmation_timeout_s: float = Field(
        60.0,
        ge=0,
        le=MAX_TIMEOUT_S,
        allow_inf_nan=False,
        description="The device reverts unless confirmed in time.",
    )
    health_check_s: float = Field(
        15.0,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="How long a target may take to show healthy predictions before it fails.",
    )
    start_at: datetime | None = Field(
        None, description="Maintenance window: do not start before (ISO 8601, with zone)."
    )
    waves: StrictInt | None = Field(
        None, ge=1, le=10_000, description="Devices per wave (at most the number of targets); all at once if not given."
    )
    retry_for_s: float = Field(
        600.0,
        ge=0,
        le=7 * 86_400,
        allow_inf_nan=False,
        description="How long a target keeps retrying after the link to its device is lost before it fails.",
    )

    @field_validator("start_at")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("start_at needs a time zone, e.g. 2026-12-01T02:00:00+01:00")
        return value

    @classmethod
    def parse(cls, text: str) -> Self:
        """From OptionsJson; UsageError naming the first problem."""
        if not text.strip():
            return cls()
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise UsageError(f"OptionsJson {first_problem(exc)}") from None

    def to_json(self) -> str:
        """The stored form: compact, without defaults left unset."""
        return self.model_dump_json(exclude_none=True)


class StoredOptions(DeployOptions):
    """Options as a deployment record keeps them; a rollback to the fallback version also marks ``fallback``."""

    fallback: bool = Field(False, description="Roll each target back to its own fallback version.")
