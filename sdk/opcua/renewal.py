"""Renewing a running server's own certificate before it expires, without a restart.

``CertificateWatch.check`` runs at start and then every ``certificate_check_s`` (gateway and edge node
settings). It reads the wall clock, not a monotonic one: renewal is about the dates in the certificate,
so a clock that jumped forward renews at the next check, and one that jumped back before the
certificate's start renews it too (the new one starts a little before that time, sdk.opcua.certificate,
so the next check finds nothing to do). A certificate ModelLine made is renewed with the same key and
subject (``certificate.ensure``); one a plant CA issued is never replaced by a self-signed one: the
check warns (log and audit, once a day) while it is due.

The new certificate is swapped into the running asyncua server, everywhere asyncua keeps the old one:

- the endpoints' ServerCertificate (``iserver.endpoints``, answered by GetEndpoints and CreateSession),
- the SecurityPolicy factories (``server._policies``, shared with the listening BinaryServer and every
  connection), from which each new SecureChannel takes its certificate and key,
- ``iserver.certificate``, which the X509 user token signature covers (OPC 10000-4 7.41.5; the private
  key, which decrypts passwords, stays the same).

SecureChannels already open keep the certificate they were opened with (their SecurityPolicy object
is made once per channel and kept across token renewals), so their sessions and subscriptions go on;
new channels get the new certificate. OPC 10000-12 7.10.9 lets a server choose when existing channels
move to a new certificate; here they move when they are next opened, since the key, and thus their
security, is unchanged. An X509 user token signed against the certificate its channel was opened with
is still accepted (``_verify_against_held``). A certificate an administrator put into ``pki/own`` (a
plant CA's, with its key) is served the same way at the next check. The same files are the server's client certificate
(gateway device links, edge PLC sources and registration, sdk.opcua.connect): new links use the new one.

Each renewal is logged and audited ("certificate" "ok", with the old and new thumbprints).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asyncua import Server
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from sdk import audit
from sdk.opcua import certificate, pki

_log = logging.getLogger(__name__)

WARN_EVERY = dt.timedelta(days=1)
"""How often a due certificate that ModelLine may not renew is warned about in the audit trail."""


def wall_clock() -> dt.datetime:
    """Now, from the system's wall clock (UTC)."""
    return dt.datetime.now(dt.UTC)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def record_renewal(uri: str, reason: str, old: x509.Certificate | None, new: x509.Certificate) -> None:
    """Log and audit that the server ``uri`` now serves ``new`` instead of ``old``, and why."""
    detail = f"server certificate renewed ({reason}): {pki.thumbprint(old) if old else '-'} -> " + (
        f"{pki.thumbprint(new)}, valid to {new.not_valid_after_utc:%Y-%m-%d} UTC"
    )
    _log.info("%s", detail)
    audit.record("certificate", "ok", target=uri, detail=detail)


class CertificateWatch:
    """Keeps a running server's own certificate renewed (see the module docstring)."""

    def __init__(
        self,
        server: Server,
        pki_dir: Path,
        application_uri: str,
        name: str,
        clock: Callable[[], dt.datetime] = wall_clock,
    ) -> None:
        self._server = server
        self._folder = pki_dir / "own"
        self._uri = application_uri
        self._name = name
        self._clock = clock
        self._held: list[tuple[x509.Certificate, Any]] = []  # certificates and keys served before, newest first
        self._warned: dict[bytes, dt.datetime] = {}
        _verify_against_held(server, self)

    @property
    def certificate(self) -> x509.Certificate | None:
        """The certificate the server gives new SecureChannels."""
        cert = self._server.iserver.certificate
        return cert if isinstance(cert, x509.Certificate) else None

    def held(self) -> list[tuple[x509.Certificate, Any]]:
        """Certificates (with their keys) the server served before the current one, which channels opened
        before a swap still use; newest first."""
        return list(self._held)

    async def check(self, now: dt.datetime | None = None) -> bool:
        """Renew the certificate when due at ``now`` (the wall clock by default), and serve the one in the
        PKI folder if it is not the one served (renewed by this or by another part of the process, such as a
        client link); True when the served certificate changed."""
        now = now or self._clock()
        host = socket.gethostname()
        own = await asyncio.to_thread(certificate.ensure, self._folder, self._uri, host, self._name, now)
        if own.due:
            self._warn(own.certificate, own.due, now)
        served = self.certificate
        if served is not None and _der(served) == _der(own.certificate):
            return False
        old = served
        self.swap(own.certificate, own.key)
        record_renewal(self._uri, own.renewed or "the certificate file changed", old, own.certificate)
        return True

    def swap(self, cert: x509.Certificate, key: RSAPrivateKey) -> None:
        """Serve ``cert`` and its ``key`` (a renewal keeps the key; a CA-issued replacement may bring a new
        one) to new SecureChannels and in GetEndpoints; open channels keep theirs."""
        server = self._server
        iserver = server.iserver
        old = iserver.certificate
        if isinstance(old, x509.Certificate) and _der(old) != _der(cert):
            self._held = [(old, iserver.private_key), *self._held][:4]
        der = _der(cert)
        iserver.certificate = cert
        iserver.private_key = key
        for factory in server._policies:  # the same list the BinaryServer and each connection hold
            if factory.certificate is not None:
                factory.certificate = cert
                factory.private_key = key
        for endpoint in server.iserver.endpoints:
            if endpoint.ServerCertificate:
                endpoint.ServerCertificate = der

    def _warn(self, cert: x509.Certificate, why: str, now: dt.datetime) -> None:
        issuer = cert.issuer.rfc4514_string()
        text = (
            f"the server certificate {pki.thumbprint(cert)} issued by {issuer} {why}: ModelLine does not replace "
            f"a certificate it did not make; have a new one issued for {self._uri} and put it, with its key, "
            f"in {self._folder}"
        )
        _log.warning("%s", text)
        last = self._warned.get(_der(cert))
        if last is None or abs(now - last) >= WARN_EVERY:
            self._warned[_der(cert)] = now
            audit.record("certificate", "failed", target=self._uri, detail=text)

    async def run(self, every_s: float) -> None:
        """``check`` now and every ``every_s`` seconds, forever; a failed check is logged and tried again."""
        while True:
            try:
                await self.check()
            except Exception:
                _log.exception("server certificate check failed; trying again in %.0f s", every_s)
            await asyncio.sleep(every_s)


def _verify_against_held(server: Server, watch: CertificateWatch) -> None:
    """Tokens a client made for the server certificate of its channel: after a swap, a channel opened
    before it still has the certificate (and key) it was given, which asyncua no longer holds as
    ``iserver.certificate`` / ``private_key``. An X509 user token's signature covers that certificate
    (OPC 10000-4 7.41.5, 5.6.3); a password is encrypted with its key (7.41.4; only a swap that brought a
    new key, a CA-issued replacement, changes that). Try the current pair, then the ones served before."""
    iserver = server.iserver

    def with_held(handle: Callable[..., Any]) -> Callable[..., Any]:
        def handler(*args: Any) -> Any:
            try:
                return handle(*args)
            except Exception:
                current = iserver.certificate, iserver.private_key
                for previous in watch.held():
                    iserver.certificate, iserver.private_key = previous  # no await in between: nothing else runs
                    try:
                        return handle(*args)
                    except Exception:
                        continue
                    finally:
                        iserver.certificate, iserver.private_key = current
                raise

        return handler

    iserver.verify_x509_token = with_held(iserver.verify_x509_token)  # type: ignore[method-assign]
    iserver.decrypt_user_token = with_held(iserver.decrypt_user_token)  # type: ignore[method-assign]
