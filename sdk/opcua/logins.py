"""Password logins that cost the server little and an attacker much.

asyncua checks a login inside ``InternalSession.activate_session``, which the connection's
``UaProcessor._process_message`` calls synchronously, and that calls the user manager's
``get_user`` synchronously too: an scrypt check there (tens of milliseconds of CPU) would stop the
whole event loop, so a burst of wrong passwords would stall every other client. asyncua offers no
asynchronous hook, so ``install()`` wraps ``UaProcessor._process_message`` once per process (as
sdk.opcua.sessions wraps InternalSession): for an ActivateSession request carrying a
UserNameIdentityToken (OPC 10000-4 5.6.3, 7.41.4) the wrapper decodes a copy of the request, has
asyncua decrypt the password, and awaits ``LoginGuard.verify`` before asyncua handles the request.
``verify``

- refuses at once, without checking, while the user name or the client's host is locked out;
- runs the scrypt check in a small thread pool shared by the process (hashlib releases the GIL), so
  the loop keeps serving other clients;
- counts failures per user name and per client host: each failure is answered only after a delay
  that doubles with every further failure, and ``max_failures`` failures for a user name (or
  ``max_failures_per_address`` from one host) within ``lockout_s`` lock it out for ``lockout_s``,
  during which even the right password is refused;
- logs every failure with the client's address and records it with sdk.audit ("login" "refused"),
  and every password login that succeeded ("login" "ok").

The same path checks a live session re-activated on a new SecureChannel (OPC 10000-4 6.7, a client
reconnecting): its password is decrypted with that session's nonce and counted like any login.

For every ActivateSession the wrapper also, in a thread: has the user manager read its users file
again when it changed (``UserStore.refresh``), and for an X509IdentityToken (OPC 10000-4 7.41.5) checks
the token's certificate against the trust list (``certificate_trusted``, which reads the PKI folder).

The verdicts travel to the user manager's ``get_user`` (sdk.opcua.users) in ContextVars, since
asyncua calls it from the same task; asyncua then answers a refusal with Bad_UserAccessDenied
(OPC 10000-4 5.6.3.2). A request the wrapper cannot decode goes to asyncua unchanged: asyncua
refuses it itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua
from asyncua.common.utils import Buffer, ServiceError
from asyncua.crypto.security_policies import SecurityPolicyNone
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary
from pydantic import BaseModel, ConfigDict, Field

from sdk import audit
from sdk.opcua.ids import node_id

_log = logging.getLogger(__name__)

_ACTIVATE = node_id(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)
_MAX_DELAY_S = 10.0
_MAX_ENTRIES = 10_000  # failure counters kept; expired ones are dropped beyond this

_pool: ThreadPoolExecutor | None = None
POOL_THREADS = 2
"""Password checks that run at once in a process; more wait their turn (off the event loop)."""


class LoginPolicy(BaseModel):
    """How a server limits password guessing (gateway and edge node settings ``login_*``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_failures: int = Field(5, ge=1, description="Failed logins of one user name that lock it out.")
    max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins from one client host that lock that host's password logins out."
    )
    lockout_s: float = Field(
        300.0, ge=0, description="How long a lockout lasts, and the window in which failures are counted."
    )
    delay_s: float = Field(
        0.5, ge=0, le=_MAX_DELAY_S, description="Delay before answering a failed login; doubles with each further one."
    )


@dataclass
class Verdict:
    """The outcome of one checked login, for the user manager."""

    username: str
    password: str
    result: Any  # what the check returned (the user's role); None: refused
    address: str

    def answers(self, username: str | None, password: str | None) -> bool:
        """Whether this verdict is on these credentials (asyncua passes them to get_user again)."""
        return self.username == (username or "") and self.password == (password or "")


@dataclass
class _Count:
    failures: int = 0
    last: float = 0.0
    locked_until: float = 0.0


_verdict: ContextVar[Verdict | None] = ContextVar("modelline_login_verdict", default=None)
_certificate: ContextVar[tuple[bytes, bool] | None] = ContextVar("modelline_certificate_verdict", default=None)
_address: ContextVar[str] = ContextVar("modelline_login_address", default="")


def verdict() -> Verdict | None:
    """The verdict on the login asyncua is activating now (None outside a wrapped ActivateSession)."""
    return _verdict.get()


def certificate_verdict(der: bytes) -> bool | None:
    """Whether the X509 user identity ``der`` of the ActivateSession being handled is trusted, as checked
    off the event loop; None when it was not checked (another certificate, or outside the wrapper)."""
    checked = _certificate.get()
    return checked[1] if checked is not None and checked[0] == der else None


def client_address() -> str:
    """The address (host:port) of the client whose ActivateSession is being handled, or ''."""
    return _address.get()


def _check_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="login-check")
    return _pool


class LoginGuard:
    """Failure counts, delays and lockouts of one server's password logins."""

    def __init__(self, policy: LoginPolicy | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or LoginPolicy()
        self._clock = clock
        self._counts: dict[tuple[str, str], _Count] = {}

    def locked_for(self, username: str, host: str) -> float:
        """Seconds until the user name's and the host's lockouts have ended (0: not locked)."""
        now = self._clock()
        ends = [c.locked_until for c in (self._counts.get(("user", username)), self._counts.get(("host", host))) if c]
        return max([end - now for end in ends] + [0.0])

    async def verify(self, username: str, password: str, address: str, check: Callable[[str, str], Any]) -> Verdict:
        """Check a login off the event loop unless locked out; delay and count a failure; audit either way."""
        host = address.rsplit(":", 1)[0]
        locked = self.locked_for(username, host)
        if locked > 0:
            until = datetime.now(UTC) + timedelta(seconds=locked)
            self._refused(username, address, f"locked out until {until:%H:%M:%S} UTC")
            await asyncio.sleep(self.policy.delay_s)
            return Verdict(username, password, None, address)
        result = await asyncio.get_running_loop().run_in_executor(_check_pool(), check, username, password)
        if result is not None:
            self._counts.pop(("user", username), None)
            audit.record("login", "ok", who=username, address=address)
            return Verdict(username, password, result, address)
        failures = max(self._fail(("user", username)), self._fail(("host", host)))
        self._refused(username, address, "wrong user name or password")
        await asyncio.sleep(min(self.policy.delay_s * 2 ** (failures - 1), _MAX_DELAY_S))
        return Verdict(username, password, None, address)

    def _fail(self, key: tuple[str, str]) -> int:
        now = self._clock()
        if len(self._counts) >= _MAX_ENTRIES:
            self._forget(now)
        count = self._counts.setdefault(key, _Count())
        if now - count.last > self.policy.lockout_s:
            count.failures = 0
        count.failures += 1
        count.last = now
        failures = count.failures
        limit = self.policy.max_failures if key[0] == "user" else self.policy.max_failures_per_address
        if failures >= limit:
            count.locked_until = now + self.policy.lockout_s
            count.failures = 0  # counted afresh once the lockout has ended
            _log.warning("%s %r locked out for %.0f s after %d failed logins", *key, self.policy.lockout_s, limit)
        return failures

    def _forget(self, now: float) -> None:
        for key, count in list(self._counts.items()):
            if count.locked_until <= now and now - count.last > self.policy.lockout_s:
                del self._counts[key]

    @staticmethod
    def _refused(username: str, address: str, reason: str) -> None:
        _log.warning("login refused for user %r from %s: %s", username, address or "?", reason)
        audit.record("login", "refused", who=username, address=address, detail=reason)


def _peer(processor: UaProcessor) -> str:
    name = processor.name
    if isinstance(name, tuple) and len(name) >= 2:
        return f"{name[0]}:{name[1]}"
    return str(name or "")


def _needs_secure_channel(processor: UaProcessor, token: Any) -> bool:
    """Whether ``token`` is a password or certificate identity sent over a SecurityPolicy None channel of a
    server that offers secure ones (a server without a certificate, in unit tests and benchmarks, has only
    the unencrypted endpoint)."""
    if token is None or isinstance(token, ua.AnonymousIdentityToken):
        return False
    policy = getattr(processor._connection, "security_policy", None)
    if policy is not None and policy.URI != SecurityPolicyNone.URI:
        return False
    endpoints = getattr(processor.iserver, "endpoints", None) or []
    return any(e.SecurityMode != ua.MessageSecurityMode.None_ for e in endpoints)


def _token(body: Buffer) -> Any:
    """The user identity token of an ActivateSession request."""
    return struct_from_binary(ua.ActivateSessionParameters, body.copy()).UserIdentityToken


def _credentials(processor: UaProcessor, requesthdr: Any, token: Any) -> tuple[str, str] | None:
    """The user name and decrypted password of an ActivateSession's token, or None (no password token)."""
    if not isinstance(token, ua.UserNameIdentityToken):
        return None
    session = processor.session
    if session is None:
        # A live session re-activated on a new SecureChannel (OPC 10000-4 6.7): asyncua looks it up by its
        # authentication token as here; its password was encrypted with that session's last nonce.
        session = processor.iserver.lookup_external_session(requesthdr.AuthenticationToken)
        if session is None:
            return None  # asyncua answers Bad_SessionIdInvalid
    username, password = processor.iserver.decrypt_user_token(session, token)
    return str(username or ""), str(password or "")


_installed = False


def install() -> None:
    """Wrap UaProcessor._process_message (idempotent)."""
    global _installed
    if _installed:
        return
    original: Callable[..., Awaitable[Any]] = UaProcessor._process_message

    @functools.wraps(original)
    async def process_message(self: UaProcessor, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        if typeid != _ACTIVATE:
            return await original(self, typeid, requesthdr, seqhdr, body)
        address = _peer(self)
        address_token = _address.set(address)
        users = self.iserver.user_manager
        try:
            refresh = getattr(users, "refresh", None)
            if refresh is not None and getattr(users, "file", None) is not None:
                await asyncio.to_thread(refresh)  # a changed users file, read before this login is checked
            guard = getattr(users, "logins", None)
            check = getattr(users, "check_login", None)
            try:
                token = _token(body)
            except Exception:  # asyncua refuses what it cannot decode, with the right StatusCode
                token = None
            if _needs_secure_channel(self, token):
                who = token.UserName if isinstance(token, ua.UserNameIdentityToken) else "certificate identity"
                reason = "a login needs a secure channel: on SecurityPolicy None only anonymous sessions"
                LoginGuard._refused(str(who or "?"), address, reason)
                raise ServiceError(ua.StatusCodes.BadIdentityTokenRejected)
            try:
                credentials = _credentials(self, requesthdr, token) if guard is not None and check is not None else None
            except ServiceError:  # a password sent unencrypted (sdk.opcua.security): refused and audited there
                raise
            except Exception:  # asyncua refuses what it cannot decrypt, with the right StatusCode
                credentials = None
            trusted = getattr(users, "certificate_trusted", None)
            if isinstance(token, ua.X509IdentityToken) and token.CertificateData and trusted is not None:
                der = bytes(token.CertificateData)
                certificate_token = _certificate.set((der, bool(await asyncio.to_thread(trusted, der))))
                try:
                    return await original(self, typeid, requesthdr, seqhdr, body)
                finally:
                    _certificate.reset(certificate_token)
            if credentials is None:
                return await original(self, typeid, requesthdr, seqhdr, body)
            assert isinstance(guard, LoginGuard)
            verdict_token = _verdict.set(await guard.verify(*credentials, address, check))  # type: ignore[arg-type]
            try:
                return await original(self, typeid, requesthdr, seqhdr, body)
            finally:
                _verdict.reset(verdict_token)
        finally:
            _address.reset(address_token)

    UaProcessor._process_message = process_message  # type: ignore[method-assign]
    _installed = True
