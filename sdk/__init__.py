"""ModelLine SDK: the signed model package format, keys, cloud pulls and the `modelline` command."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("modelline")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
