"""Who may do what on a ModelLine server: the well-known roles of OPC 10000-3 (4.9.2) and logins.

Observer reads and subscribes; Operator also acknowledges and resumes;
Engineer installs models, binds tags and confirms updates; SecurityAdmin manages
users. A users file (TOML) holds scrypt password hashes and the role for
anonymous clients::

    anonymous = "Observer"          # or omit / set "" to refuse clients that do not log in

    [users.alice]
    role = "Engineer"
    password = "scrypt$16384$8$1$<salt hex>$<hash hex>"   # from: modelline users add ...

asyncua knows only Admin and User, and its Admin may write any attribute of any node
(a prediction, a version, a hash, the NamespaceArray) and add or delete nodes. So
every role maps to asyncua's User, which may write only the Value of variables
whose AccessLevel and UserAccessLevel allow it; method handlers (``requires``) and
write checks (sdk.opcua.writes) check the ModelLine role.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, ParamSpec

from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from pydantic import BaseModel, ConfigDict, ValidationError

from sdk.errors import BAD_USER_ACCESS_DENIED, NotFound, UsageError
from sdk.opcua import sessions
from sdk.opcua.status import StatusError

_log = logging.getLogger(__name__)
P = ParamSpec("P")

_SCRYPT = (16384, 8, 1)


class Role(IntEnum):
    """OPC 10000-3 well-known roles, in increasing order of what they may do."""

    OBSERVER = 1
    OPERATOR = 2
    ENGINEER = 3
    SECURITY_ADMIN = 4

    @classmethod
    def parse(cls, text: str) -> Role:
        """From 'Observer', 'Operator', 'Engineer' or 'SecurityAdmin'."""
        names = {
            "observer": cls.OBSERVER,
            "operator": cls.OPERATOR,
            "engineer": cls.ENGINEER,
            "securityadmin": cls.SECURITY_ADMIN,
        }
        try:
            return names[text.replace("_", "").replace(" ", "").lower()]
        except KeyError:
            raise UsageError(f"role {text!r} is not Observer, Operator, Engineer or SecurityAdmin") from None

    @property
    def label(self) -> str:
        """The role's name as OPC 10000-3 writes it."""
        return {1: "Observer", 2: "Operator", 3: "Engineer", 4: "SecurityAdmin"}[int(self)]


def hash_password(password: str) -> str:
    """An scrypt hash to store in a users file."""
    salt = os.urandom(16)
    n, r, p = _SCRYPT
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a stored scrypt hash (constant-time compare)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str
    password: str


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anonymous: str = "Observer"
    users: dict[str, _Entry] = {}


class UserCertificate(bytes):
    """The DER certificate of an X509 user identity token (OPC 10000-4 7.41.5), as the server's token check
    (sdk.opcua.security) passes it; any other ``certificate`` given to ``get_user`` is the channel's."""


def certificate_name(der: bytes) -> str:
    """The CommonName of a DER certificate, for logs and the audit trail."""
    from sdk.opcua.pki import common_name, load_certificate

    return common_name(load_certificate(der))


@dataclass
class RoleUser(User):
    """An asyncua User that also carries its ModelLine role."""

    modelline_role: Role = Role.OBSERVER


class UserStore(UserManager):
    """Logins and roles; the asyncua user manager of a ModelLine server."""

    def __init__(self, users: dict[str, tuple[Role, str]], anonymous: Role | None) -> None:
        self._users = users
        self.anonymous = anonymous
        self.certificate_trusted: Callable[[bytes], bool] | None = None  # set by sdk.opcua.security

    @classmethod
    def load(cls, path: Path | None, anonymous: str | None = "Observer") -> UserStore:
        """From a users file; without one, only anonymous clients with the given role (None: nobody)."""
        if path is None:
            return cls({}, Role.parse(anonymous) if anonymous else None)
        try:
            data = _File.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise NotFound(f"users file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise UsageError(f"users file {path} is invalid: {str(exc).splitlines()[0]}") from None
        users = {name: (Role.parse(e.role), e.password) for name, e in data.users.items()}
        return cls(users, Role.parse(data.anonymous) if data.anonymous else None)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        """Called by asyncua at ActivateSession; None refuses the session."""
        if isinstance(certificate, UserCertificate):
            # An application certificate in the trust list (the gateway's) is an Engineer; any other, nobody.
            if self.certificate_trusted is not None and self.certificate_trusted(bytes(certificate)):
                return self._user(Role.ENGINEER, f"certificate {certificate_name(certificate)}")
            _log.warning("X509 user identity refused: its certificate is not in the trust list")
            return None
        if not username:
            return self._user(self.anonymous, None) if self.anonymous is not None else None
        entry = self._users.get(username)
        if entry is None or not check_password(password or "", entry[1]):
            _log.warning("login refused for user %r", username)
            return None
        return self._user(entry[0], username)

    @staticmethod
    def _user(role: Role, name: str | None) -> RoleUser:
        return RoleUser(role=UserRole.User, name=name, modelline_role=role)


def current_role() -> Role:
    """The role of the calling session (Observer when unknown)."""
    user = sessions.current_user()
    return user.modelline_role if isinstance(user, RoleUser) else Role.OBSERVER


def requires(role: Role) -> Callable[[Callable[P, Awaitable[Any]]], Callable[P, Awaitable[Any]]]:
    """Refuse a method call with Bad_UserAccessDenied unless the caller has at least ``role``."""

    def decorate(func: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if current_role() < role:
                raise StatusError(BAD_USER_ACCESS_DENIED, f"{func.__name__.strip('_')} needs the {role.label} role")
            return await func(*args, **kwargs)

        return wrapper

    return decorate
