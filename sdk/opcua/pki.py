"""Certificate trust lists of a ModelLine application: which peers it accepts (OPC 10000-4 6.1.3, OPC 10000-12 7.3).

The PKI folder is laid out the way OPC UA tools (UaExpert, the OPC Foundation stacks, node-opcua) keep it::

    <data folder>/pki/own/cert.der, key.pem        this application's certificate (sdk.opcua.certificate)
                      trusted/certs/*.der|pem       peers (or CAs) trusted
                      trusted/crl/*.der|pem         revocation lists of trusted CAs
                      issuers/certs/*.der|pem       CAs that may appear in a chain but are not trusted themselves
                      issuers/crl/*.der|pem         their revocation lists
                      rejected/*.der                certificates refused because nobody trusted them yet

A peer's application certificate is accepted when it is in ``trusted/certs``, or issued by a CA in
``trusted/certs`` (directly, or through CAs in ``issuers/certs``); it must be valid now, name the
ApplicationUri the peer states, and appear in no revocation list of its issuer. An untrusted but
otherwise valid certificate is copied to ``rejected/`` so that an administrator can approve it
(``modelline trust approve``). The lists are read again on each check: a change needs no restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from sdk import audit
from sdk.errors import NotFound, UsageError

LISTS = ("trusted", "issuers", "rejected")
_CERT_SUFFIXES = (".der", ".pem", ".crt", ".cer")


def ensure_layout(pki_dir: Path) -> Path:
    """Make the folders of ``pki_dir`` (0700) if missing; returns it (blocking: call in a thread)."""
    for sub in ("own", "trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl", "rejected"):
        (pki_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    return pki_dir


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from DER or PEM bytes."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def thumbprint(cert: x509.Certificate) -> str:
    """The SHA-1 thumbprint OPC UA uses to name a certificate (OPC 10000-4 7.38.2), upper-case hex."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324


def common_name(cert: x509.Certificate) -> str:
    """The subject's CommonName, or the whole subject when it has none."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def application_uri(cert: x509.Certificate) -> str:
    """The ApplicationUri in the certificate's subjectAltName ('' if none)."""
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else ""


def file_name(cert: x509.Certificate) -> str:
    """``<CommonName> [<thumbprint>].der``, as the OPC Foundation stacks and UaExpert name trust list files."""
    safe = re.sub(r"[^A-Za-z0-9 ._-]", "_", common_name(cert))[:64].strip() or "certificate"
    return f"{safe} [{thumbprint(cert)}].der"


@dataclass(frozen=True)
class Entry:
    """One certificate in a list."""

    list: str
    file: Path
    subject: str
    application_uri: str
    thumbprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool

    def as_dict(self) -> dict[str, object]:
        """For ``--json`` output."""
        return {
            "list": self.list,
            "file": self.file.name,
            "subject": self.subject,
            "application_uri": self.application_uri,
            "thumbprint": self.thumbprint,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "ca": self.is_ca,
        }


def is_ca(cert: x509.Certificate) -> bool:
    """Whether ``cert`` is a CA certificate (BasicConstraints cA)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def entry_of(list_name: str, path: Path, cert: x509.Certificate) -> Entry:
    """The listing of one certificate file of ``list_name`` (own, trusted, issuers, rejected)."""
    return Entry(
        list_name,
        path,
        cert.subject.rfc4514_string(),
        application_uri(cert),
        thumbprint(cert),
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        is_ca(cert),
    )


def _cert_dir(pki_dir: Path, list_name: str) -> Path:
    if list_name not in LISTS:
        raise UsageError(f"trust list {list_name!r} is not one of {', '.join(LISTS)}")
    return pki_dir / list_name if list_name == "rejected" else pki_dir / list_name / "certs"


def _read_dir(folder: Path) -> list[tuple[Path, x509.Certificate]]:
    found = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.suffix.lower() in _CERT_SUFFIXES and path.is_file():
            try:
                found.append((path, load_certificate(path.read_bytes())))
            except ValueError:
                continue  # not a certificate: ignored, as other OPC UA tools do
    return found


def entries(pki_dir: Path, list_name: str | None = None) -> list[Entry]:
    """The certificates of one list, or of all three (blocking)."""
    names = [list_name] if list_name else list(LISTS)
    return [entry_of(name, path, cert) for name in names for path, cert in _read_dir(_cert_dir(pki_dir, name))]


def find(pki_dir: Path, what: str) -> Entry:
    """The certificate named by a thumbprint (or a unique prefix of one, at least 6 hex digits) or file name."""
    wanted = what.strip().upper().replace(":", "")
    if not Path(what).suffix and len(wanted) < 6:
        raise UsageError(f"{what!r} is too short: give at least 6 hex digits of a thumbprint ('modelline trust list')")
    hits = [
        e for e in entries(pki_dir) if e.file.name == what or (len(wanted) >= 6 and e.thumbprint.startswith(wanted))
    ]
    if not hits:
        raise NotFound(f"no certificate {what!r} in {pki_dir} (see 'modelline trust list')")
    if len({e.thumbprint for e in hits}) > 1:
        raise UsageError(f"{what!r} names several certificates; give more of the thumbprint")
    return hits[0]


def approve(pki_dir: Path, what: str) -> Entry:
    """Trust a certificate: a rejected one (by thumbprint or file name) moves to ``trusted/certs``; an
    existing certificate file (DER or PEM) is copied there. A CA certificate goes to ``trusted/certs`` as well:
    it then trusts every certificate it issued (blocking)."""
    ensure_layout(pki_dir)
    source = Path(what)
    if source.is_file():
        try:
            cert = load_certificate(source.read_bytes())
        except ValueError:
            raise UsageError(f"{source} is not a certificate (DER or PEM)") from None
        moved_from: Path | None = None
    else:
        entry = find(pki_dir, what)
        cert, moved_from = load_certificate(entry.file.read_bytes()), entry.file
    target = pki_dir / "trusted" / "certs" / file_name(cert)
    target.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    if moved_from is not None and moved_from != target:
        moved_from.unlink()
    (pki_dir / "rejected" / file_name(cert)).unlink(missing_ok=True)  # approved from a file: no longer waiting
    audit.record("trust", "ok", target=common_name(cert), detail=f"approved {thumbprint(cert)} into trusted/certs")
    return entry_of("trusted", target, cert)


def remove(pki_dir: Path, what: str) -> Entry:
    """Delete a certificate from whichever list holds it (blocking)."""
    entry = find(pki_dir, what)
    entry.file.unlink()
    audit.record("trust", "ok", target=entry.subject, detail=f"removed {entry.thumbprint} from {entry.list}")
    return entry


def add_crl(pki_dir: Path, crl_file: Path, issuers: bool = False) -> Path:
    """Copy a revocation list into ``trusted/crl`` (or ``issuers/crl``) (blocking)."""
    data = crl_file.read_bytes()
    try:
        crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
    except ValueError:
        raise UsageError(f"{crl_file} is not a certificate revocation list (DER or PEM)") from None
    ensure_layout(pki_dir)
    digest = hashlib.sha1(crl.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324
    target = pki_dir / ("issuers" if issuers else "trusted") / "crl" / f"{digest}.crl.der"
    target.write_bytes(crl.public_bytes(serialization.Encoding.DER))
    audit.record("trust", "ok", target=crl.issuer.rfc4514_string(), detail=f"revocation list added: {target.name}")
    return target


class CertificateRefused(Exception):
    """Why a peer's certificate is refused: an OPC UA status code (Bad_Certificate*) and a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# The status codes of OPC 10000-4 Table 106 (certificate validation steps).
BAD_CERTIFICATE_TIME_INVALID = ua.StatusCodes.BadCertificateTimeInvalid
BAD_CERTIFICATE_URI_INVALID = ua.StatusCodes.BadCertificateUriInvalid
BAD_CERTIFICATE_UNTRUSTED = ua.StatusCodes.BadCertificateUntrusted
BAD_CERTIFICATE_REVOKED = ua.StatusCodes.BadCertificateRevoked


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported key types alike
        return False
    return True


def _may_vouch(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    """Whether a trusted ``issuer`` may vouch for ``cert``: a CA for anything it issued; a trusted application
    instance certificate (one naming an ApplicationUri, as self-signed ones may carry cA) only for its own
    renewals, same key and same ApplicationUri (sdk.opcua.renewal): its holder cannot mint certificates for
    other applications that the peers of this trust list would accept."""
    if not application_uri(issuer):
        return True
    same_key = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return same_key and application_uri(cert) == application_uri(issuer)


def _revoked(
    cert: x509.Certificate, issuer: x509.Certificate | None, crls: list[x509.CertificateRevocationList]
) -> bool:
    for crl in crls:
        if crl.issuer != cert.issuer:
            continue
        if issuer is not None and not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            continue
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return True
    return False


def _read_crls(folder: Path) -> list[x509.CertificateRevocationList]:
    crls = []
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            crls.append(
                x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
            )
        except ValueError:
            continue
    return crls


def check(pki_dir: Path, cert: x509.Certificate, app_uri: str | None, now: dt.datetime | None = None) -> None:
    """Raise CertificateRefused unless ``cert`` is acceptable (blocking; OPC 10000-4 6.1.3 in this order:
    validity period, ApplicationUri, trust, revocation). ``app_uri`` None skips the URI check (user tokens)."""
    now = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateRefused(
            BAD_CERTIFICATE_TIME_INVALID,
            f"not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)",
        )
    if app_uri is not None and application_uri(cert) != app_uri:
        raise CertificateRefused(
            BAD_CERTIFICATE_URI_INVALID,
            f"names application {application_uri(cert)!r}, the client says it is {app_uri!r}",
        )
    trusted = [c for _, c in _read_dir(pki_dir / "trusted" / "certs")]
    issuers = [c for _, c in _read_dir(pki_dir / "issuers" / "certs")]
    crls = _read_crls(pki_dir / "trusted" / "crl") + _read_crls(pki_dir / "issuers" / "crl")
    der = cert.public_bytes(serialization.Encoding.DER)
    chain_ok, current = False, cert
    if any(t.public_bytes(serialization.Encoding.DER) == der for t in trusted):
        chain_ok = True
    for _ in range(8):  # chain up to the first trusted CA, through issuers/ (OPC 10000-4 6.1.3 "build chain")
        if chain_ok:
            break
        issuer = next((c for c in trusted if is_ca(c) and _issued_by(current, c) and _may_vouch(c, current)), None)
        if issuer is not None:
            if _revoked(current, issuer, crls):
                raise CertificateRefused(BAD_CERTIFICATE_REVOKED, f"revoked by {common_name(issuer)}")
            chain_ok = True
            break
        issuer = next((c for c in issuers if is_ca(c) and _issued_by(current, c) and _may_vouch(c, current)), None)
        if issuer is None or issuer.public_bytes(serialization.Encoding.DER) == current.public_bytes(
            serialization.Encoding.DER
        ):
            break
        if _revoked(current, issuer, crls):
            raise CertificateRefused(BAD_CERTIFICATE_REVOKED, f"revoked by {common_name(issuer)}")
        current = issuer
    if not chain_ok:
        raise CertificateRefused(BAD_CERTIFICATE_UNTRUSTED, "not in the trust list")
    if _revoked(cert, None, crls):
        raise CertificateRefused(BAD_CERTIFICATE_REVOKED, "in a revocation list")


MAX_REJECTED = 200  # certificates kept in rejected/: the newest; a flood of fresh certificates cannot fill the disk


def reject(pki_dir: Path, cert: x509.Certificate) -> Path:
    """Keep an untrusted certificate in ``rejected/`` for an administrator to approve, the newest
    ``MAX_REJECTED`` only (blocking)."""
    folder = pki_dir / "rejected"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / file_name(cert)
    if not target.exists():
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        os.replace(tmp, target)
        kept = sorted((p for p in folder.glob("*.der") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
        for old in kept[: max(0, len(kept) - MAX_REJECTED)]:
            old.unlink(missing_ok=True)
    return target


_seen: dict[Path, dict[tuple[str, str], str]] = {}


def changes(pki_dir: Path) -> list[str]:
    """What changed in ``trusted/`` and ``issuers/`` (certificates and revocation lists) since the last call
    for ``pki_dir`` in this process, one line each; nothing on the first call (blocking). A server calls it
    at each certificate check, so that a change made by any tool (``modelline trust``, a file copied in)
    reaches its audit trail."""
    now: dict[tuple[str, str], str] = {}
    for name in ("trusted", "issuers"):
        for _, cert in _read_dir(pki_dir / name / "certs"):
            now[(f"{name}/certs", thumbprint(cert))] = common_name(cert)
        folder = pki_dir / name / "crl"
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.is_file():
                now[(f"{name}/crl", path.name)] = "revocation list"
    before = _seen.get(pki_dir)
    _seen[pki_dir] = now
    if before is None:
        return []
    added = [f"{w}: added {label} [{key}]" for (w, key), label in sorted(now.items()) if (w, key) not in before]
    gone = [f"{w}: removed {label} [{key}]" for (w, key), label in sorted(before.items()) if (w, key) not in now]
    return added + gone


AUDIT_REFUSALS_PER_MINUTE = 10  # per client host: more are counted, and said in the next record, not each recorded
_refusals: dict[str, tuple[float, int, int]] = {}  # host -> (window start, recorded, not recorded)


def _audit_refusal(address: str) -> tuple[bool, int]:
    """Whether to record this refusal from ``address``, and how many were not recorded before it."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    now = time.monotonic()
    start, recorded, skipped = _refusals.get(host, (now, 0, 0))
    if now - start > 60:
        start, recorded = now, 0
    if recorded >= AUDIT_REFUSALS_PER_MINUTE:
        _refusals[host] = (start, recorded, skipped + 1)
        return False, 0
    _refusals[host] = (start, recorded + 1, 0)
    if len(_refusals) > 10_000:
        _refusals.clear()
    return True, skipped


def is_trusted(pki_dir: Path, cert: x509.Certificate) -> bool:
    """Whether ``cert`` passes ``check`` without the ApplicationUri (a user's X509 identity, OPC 10000-4 7.41.5)."""
    try:
        check(pki_dir, cert, None)
    except CertificateRefused:
        return False
    return True


async def check_peer(pki_dir: Path, cert: x509.Certificate, app_uri: str | None, address: str = "") -> None:
    """``check``, off the event loop; an untrusted certificate is also kept in ``rejected/``; every refusal
    is audited (action "certificate", outcome "refused")."""
    try:
        for change in await asyncio.to_thread(changes, pki_dir):
            audit.record("trust", "ok", who="trust list", target=str(pki_dir), detail=change)
        await asyncio.to_thread(check, pki_dir, cert, app_uri)
    except CertificateRefused as refused:
        if refused.status == BAD_CERTIFICATE_UNTRUSTED:
            await asyncio.to_thread(reject, pki_dir, cert)
        record, skipped = _audit_refusal(address)
        if record:
            more = f" ({skipped} more refusals from this host were not recorded one by one)" if skipped else ""
            audit.record(
                "certificate",
                "refused",
                who=common_name(cert),
                address=address,
                target=f"{application_uri(cert)} [{thumbprint(cert)}]",
                detail=refused.reason + more,
            )
        raise
