"""ModelLine SDK: the signed model package format, keys, cloud pulls and the `modelline` command."""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - only when asked (CLI start-up)

    try:
        return version("modelline")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"


def __getattr__(name: str) -> str:
    """``sdk.__version__``, read from the installed metadata when first asked for."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
