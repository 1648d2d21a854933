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
write checks (sdk.opcua.writes: the only variables a client may write) check the
ModelLine role, and sdk.opcua.access shows it in UserExecutable / UserAccessLevel.
Password logins (also a live session's re-activation on a new channel) are checked off the event
loop, with failure counting and lockouts, and an X509 user identity's certificate against the trust
list, by sdk.opcua.logins before asyncua calls ``get_user``; it also has a changed users file read
again (``refresh``), so a running server needs no restart after ``modelline users ...``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import threading
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, ParamSpec

from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager
from pydantic import BaseModel, ConfigDict, ValidationError

from sdk import audit
from sdk.audit_log import on_disk
from sdk.errors import BAD_USER_ACCESS_DENIED, NotFound, UsageError
from sdk.opcua import logins, sessions
from sdk.opcua.logins import LoginGuard, LoginPolicy
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
    # X509 user identities: a certificate's thumbprint, or an ApplicationUri (shell pattern), -> role.
    certificates: dict[str, str] = {}


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

    def __init__(
        self,
        users: dict[str, tuple[Role, str]],
        anonymous: Role | None,
        policy: LoginPolicy | None = None,
        certificates: Mapping[str, Role] | None = None,
    ) -> None:
        self._users = users
        self.anonymous = anonymous
        self.certificate_roles: dict[str, Role] = {}  # the application's own mapping (new_server)
        self._certificates = dict(certificates or {})  # from the users file; it wins
        self.logins = LoginGuard(policy)  # failure counts and lockouts; sdk.opcua.logins runs it
        self.certificate_trusted: Callable[[bytes], bool] | None = None  # set by sdk.opcua.security
        self._path: Path | None = None
        self._stamp: tuple[int, int, int] | None = None  # the users file's (mtime_ns, size, inode) when read
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, path: Path | None, anonymous: str | None = "Observer", policy: LoginPolicy | None = None
    ) -> UserStore:
        """From a users file (read again when it changes, ``refresh``); without one, only anonymous clients
        with the given role (None: nobody)."""
        if path is None:
            return cls({}, Role.parse(anonymous) if anonymous else None, policy)
        stamp = _stamp(path)
        users, anonymous_role, certificates = _read(path)
        store = cls(users, anonymous_role, policy, certificates)
        store._path, store._stamp = path, stamp
        return store

    @property
    def file(self) -> Path | None:
        """The users file read at start and again when it changes (None: no file)."""
        return self._path

    def refresh(self) -> bool:
        """Read the users file again if it changed (modification time, size or inode) since it was read, so
        that ``modelline users add | passwd | remove | anonymous`` take effect without a restart; True when
        it was read again. A file that is missing or invalid now is logged and the users read before are
        kept (sessions already open stay as they are). Blocking (a stat, and a read on change): run it in a
        thread; sdk.opcua.logins calls it before each ActivateSession."""
        if self._path is None:
            return False
        with self._lock:
            try:
                stamp = _stamp(self._path)
            except NotFound:
                stamp = None
            if stamp == self._stamp:
                return False
            self._stamp = stamp  # a bad file is reported once per change, not at every login
            try:
                users, anonymous, certificates = _read(self._path)
            except (NotFound, UsageError) as exc:
                _log.warning("users file not read again, the %d users read before stay: %s", len(self._users), exc)
                return False
            changes = _changes(self._users, users, self.anonymous, anonymous, self._certificates, certificates)
            self._users, self.anonymous, self._certificates = users, anonymous, certificates
        _log.warning(
            "users file %s changed: read again (%d users, anonymous %s)%s",
            self._path,
            len(users),
            anonymous.label if anonymous else "refused",
            f": {'; '.join(changes)}" if changes else "",
        )
        for change in changes:  # who edited the file is not known here: the file is named instead
            audit.record("user", "ok", who="users file", target=str(self._path), detail=change)
        return True

    def certificate_role(self, der: bytes) -> Role | None:
        """The role of a trusted X509 user identity: by its thumbprint, else by its ApplicationUri (the users
        file's ``[certificates]`` first, then the application's own mapping); None when nothing names it."""
        from fnmatch import fnmatchcase

        from sdk.opcua.pki import application_uri, load_certificate, thumbprint

        cert = load_certificate(der)
        print_, uri = thumbprint(cert), application_uri(cert)
        for roles in (self._certificates, self.certificate_roles):
            if print_ in roles:
                return roles[print_]
            for pattern, role in roles.items():
                if uri and fnmatchcase(uri, pattern):
                    return role
        return None

    def check_login(self, username: str, password: str) -> Role | None:
        """The user's role when the password is right, else None; blocking (scrypt), run off the event loop.

        An unknown user name costs the same scrypt check, so that timing does not tell which names exist."""
        entry = self._users.get(username)
        ok = check_password(password, entry[1] if entry is not None else _DUMMY_HASH)
        return entry[0] if entry is not None and ok else None

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        """Called by asyncua at ActivateSession; None refuses the session.

        A password login arrives already checked (off the event loop, with failure counting and lockout)
        by sdk.opcua.logins; only a login that bypassed it is checked here."""
        if isinstance(certificate, UserCertificate):
            # A certificate in the trust list has the role its thumbprint or ApplicationUri is given (the gateway's
            # on an edge node: Engineer); any other, none. sdk.opcua.logins checked the trust list off the event
            # loop; only a login that bypassed it is checked here.
            trusted = logins.certificate_verdict(bytes(certificate))
            if trusted is None:
                trusted = self.certificate_trusted is not None and self.certificate_trusted(bytes(certificate))
            who, address = f"certificate {certificate_name(certificate)}", logins.client_address()
            if not trusted:
                _log.warning("X509 user identity %s from %s refused: not in the trust list", who, address or "?")
                audit.record("login", "refused", who=who, address=address, detail="certificate not in the trust list")
                return None
            role = self.certificate_role(bytes(certificate))
            if role is None:
                _log.warning("X509 user identity %s from %s refused: no role is given to it", who, address or "?")
                audit.record("login", "refused", who=who, address=address, detail="no role for this certificate")
                return None
            audit.record("login", "ok", who=who, address=address, detail=f"role {role.label}, certificate identity")
            return self._user(role, who)
        if not username:
            if self.anonymous is None:
                _log.warning("anonymous login refused from %s", logins.client_address() or "?")
                audit.record("login", "refused", who="anonymous", address=logins.client_address(), detail="anonymous")
                return None
            return self._user(self.anonymous, None)
        checked = logins.verdict()
        if checked is not None and checked.answers(username, password):
            role = checked.result  # refusals were logged and audited with the client's address
        else:
            role = self.check_login(username, password or "")
            if role is None:
                _log.warning("login refused for user %r", username)
                audit.record("login", "refused", who=username, detail="wrong user name or password")
            else:
                audit.record("login", "ok", who=username, detail=f"role {role.label}")
        return self._user(role, username) if role is not None else None

    @staticmethod
    def _user(role: Role, name: str | None) -> RoleUser:
        return RoleUser(role=UserRole.User, name=name, modelline_role=role)


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFound(f"users file {path} does not exist") from None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read(path: Path) -> tuple[dict[str, tuple[Role, str]], Role | None, dict[str, Role]]:
    """The users, the anonymous role and the certificate identities' roles in a users file."""
    try:
        data = _File.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise NotFound(f"users file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise UsageError(f"users file {path} is invalid: {str(exc).splitlines()[0]}") from None
    users = {name: (Role.parse(e.role), e.password) for name, e in data.users.items()}
    certificates = {_certificate_key(key): Role.parse(role) for key, role in data.certificates.items()}
    return users, Role.parse(data.anonymous) if data.anonymous else None, certificates


def _certificate_key(key: str) -> str:
    """A thumbprint (upper-case, without colons) or an ApplicationUri pattern as written."""
    bare = key.replace(":", "").strip()
    return bare.upper() if len(bare) == 40 and all(c in "0123456789abcdefABCDEF" for c in bare) else key.strip()


_DUMMY_HASH = f"scrypt${_SCRYPT[0]}${_SCRYPT[1]}${_SCRYPT[2]}${'00' * 16}${'00' * 32}"


def current_role() -> Role:
    """The role of the calling session (Observer when unknown)."""
    user = sessions.current_user()
    return user.modelline_role if isinstance(user, RoleUser) else Role.OBSERVER


def requires(role: Role) -> Callable[[Callable[P, Awaitable[Any]]], Callable[P, Awaitable[Any]]]:
    """Refuse a method call with Bad_UserAccessDenied unless the caller has at least ``role`` (audited)."""

    def decorate(func: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            if current_role() < role:
                reason = f"{func.__name__.strip('_')} needs the {role.label} role"
                audit.record(
                    func.__name__.strip("_").replace("_", " "),
                    "refused",
                    who=sessions.current_who(),
                    address=sessions.current_address(),
                    detail=f"{reason}; the caller is {current_role().label}",
                )
                await on_disk()
                raise StatusError(BAD_USER_ACCESS_DENIED, reason)
            return await func(*args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]  # read by required_role() for UserExecutable
        return wrapper

    return decorate


def required_role(handler: Any) -> Role | None:
    """The role a method handler made with ``requires`` (under any functools.wraps wrappers) needs, or None."""
    role = getattr(handler, "required_role", None)
    return role if isinstance(role, Role) else None


def _changes(
    users: dict[str, tuple[Role, str]],
    new_users: dict[str, tuple[Role, str]],
    anonymous: Role | None,
    new_anonymous: Role | None,
    certificates: dict[str, Role],
    new_certificates: dict[str, Role],
) -> list[str]:
    """What changed between two readings of a users file, one line each, for the audit trail."""
    found = [f"user {n!r} added ({new_users[n][0].label})" for n in sorted(new_users.keys() - users.keys())]
    found += [f"user {n!r} removed" for n in sorted(users.keys() - new_users.keys())]
    for name in sorted(users.keys() & new_users.keys()):
        if users[name][0] != new_users[name][0]:
            found.append(f"user {name!r}: role {users[name][0].label} -> {new_users[name][0].label}")
        if users[name][1] != new_users[name][1]:
            found.append(f"user {name!r}: password changed")
    if anonymous != new_anonymous:
        before, after = (r.label if r else "refused" for r in (anonymous, new_anonymous))
        found.append(f"anonymous: {before} -> {after}")
    for key in sorted(certificates.keys() | new_certificates.keys()):
        if certificates.get(key) != new_certificates.get(key):
            before, after = (r.label if r else "none" for r in (certificates.get(key), new_certificates.get(key)))
            found.append(f"certificate identity {key}: {before} -> {after}")
    return found
