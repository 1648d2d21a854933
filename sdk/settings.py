"""Loading a process's settings: defaults, then a TOML file, then environment variables, then flags."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from sdk.errors import NotFound, UsageError
from sdk.names import first_problem

S = TypeVar("S", bound=BaseSettings)

# Limits both servers take, with the same bounds (edge_node/settings.py, gateway/settings.py).
MaxByteString = Annotated[
    int,
    Field(
        ge=4096,
        le=8 << 20,
        description="Largest ByteString served or accepted (file transfer chunk), in bytes; also sets the largest "
        "message a client may send (twice this plus 64 KiB).",
    ),
]
MaxPackageBytes = Annotated[
    int,
    Field(
        ge=1 << 20,
        le=16 << 30,
        description="Largest package accepted by one transfer (an upload, or DI FileTransfer), in bytes; a Write "
        "beyond it is refused (BadResourceUnavailable) and the transfer abandoned.",
    ),
]

# Password-guessing limits of both servers (sdk.opcua.logins.LoginPolicy; README "Logins and lockout").
LoginMaxFailures = Annotated[
    int, Field(ge=1, le=1000, description="Failed logins of one user name within login_lockout_s that lock it out.")
]
LoginMaxFailuresPerAddress = Annotated[
    int,
    Field(ge=1, le=100_000, description="Failed logins from one client host that lock out its password logins."),
]
LoginLockoutS = Annotated[
    float, Field(ge=0, le=86_400, description="How long a lockout lasts; also the window failures are counted in.")
]
LoginDelayS = Annotated[
    float, Field(ge=0, le=10, description="Delay before a failed login is answered; doubles with each further failure.")
]

# How often a running server checks its own certificate's dates (sdk.opcua.renewal; README "Security").
CertificateCheckS = Annotated[
    float,
    Field(
        ge=1,
        le=86_400,
        description="How often the server's own certificate is checked against the wall clock and renewed when "
        "fewer than 90 days remain or it is not valid now (a ModelLine certificate; one a plant CA issued is "
        "warned about instead). Sessions already open keep working across a renewal.",
    ),
]


def load_settings(cls: type[S], config: Path | None = None, **overrides: Any) -> S:
    """Settings of type ``cls``: flags (non-None ``overrides``) over environment over ``config`` over defaults."""
    if config is not None:
        if not config.is_file():
            raise NotFound(f"config file {config} does not exist")
        try:
            tomllib.loads(config.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"config file {config} is not valid TOML: {exc}") from None

    class _FromFile(cls):  # type: ignore[valid-type, misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
            if config is not None:
                sources += (TomlConfigSettingsSource(settings_cls, toml_file=config),)
            return sources

    try:
        settings = _FromFile(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise UsageError(f"setting {first_problem(exc)}" + (f" (in {config})" if config else "")) from None
    return cls.model_validate(settings.model_dump())
