"""Validated text that users give and servers keep: plain names and opc.tcp endpoint URLs.

Each is a pydantic annotated type, so the model that stores a value (a device
record, a binding, settings) is the one that checks it, on the way in and again
when it is read back.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, ValidationError

from sdk.package.manifest import check_name, check_version

MAX_URL_LENGTH = 512
# A DNS host name: RFC 1123 labels (and '_', as container names use it); IP literals go to ipaddress.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")


def check_endpoint_url(value: str, what: str = "endpoint") -> str:
    """Return ``value`` if it is an ``opc.tcp://host[:port][/path]`` URL a client can connect to."""
    problem = _endpoint_problem(value)
    if problem:
        raise ValueError(f"{what} {value[:80]!r} {problem}")
    return value


def _endpoint_problem(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if not value.startswith("opc.tcp://"):
        return "must be an opc.tcp:// URL"
    if not value.isprintable() or any(c.isspace() for c in value):
        return "must not hold spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "is not a URL of the form opc.tcp://host:port/"
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        return "must not carry a user name or password (log in with --user)"
    if port is not None and not 1 <= port <= 65535:
        return "has a port outside 1..65535"
    if parts.query or parts.fragment:
        return "must not have a query or fragment"
    if not host:
        return "names no host"
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"has an invalid IPv6 address {host!r}"
    elif not _HOST.fullmatch(host):
        return f"has an invalid host name {host!r}"
    return ""


def first_problem(exc: ValidationError, whole: str = "") -> str:
    """'where: what' of the first validation error, for a one-line refusal (``whole`` names a problem of the
    whole document, which pydantic locates nowhere)."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or whole
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


Name = Annotated[str, AfterValidator(lambda value: check_name(value, "name"))]
"""A plain name (device id, model name, slot): a letter, then letters, digits, '_', '.', '-'; 64 at most."""

Version = Annotated[str, AfterValidator(check_version)]
"""A semantic version like 1.2.0 (semver.org 2.0.0), at most 64 characters."""

EndpointUrl = Annotated[str, AfterValidator(check_endpoint_url)]
"""An opc.tcp:// URL with a valid host, an optional port in 1..65535, and at most 512 characters."""
