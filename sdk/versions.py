"""A software version as a device reports it (DI SoftwareVersionType, OPC 10000-100 8.4.11)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VersionInfo:
    """One of a slot's Current, Pending or Fallback versions: which model, which version, which package."""

    manufacturer_uri: str
    revision: str
    hash: bytes

    @property
    def empty(self) -> bool:
        """No version in this place."""
        return not self.revision
