"""The own certificate's dates and origin: what is renewed, when, and what never is (sdk/opcua/certificate.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from sdk.errors import UsageError
from sdk.opcua import certificate, pki
from tests.tls import issue

URI, HOST, NAME = "urn:modelline:edge:unit", "unit-host", "ModelLine Edge unit"


def test_a_modelline_certificate_is_renewed_when_due_with_its_key_and_subject(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    first = certificate.ensure(tmp_path, URI, HOST, NAME, now)
    assert first.renewed == "first start" and certificate.made_here(first.certificate)
    assert first.certificate.not_valid_before_utc <= now - certificate.START_MARGIN + dt.timedelta(seconds=1)
    assert not certificate.ensure(tmp_path, URI, HOST, NAME, now + dt.timedelta(days=600)).renewed
    later = now + dt.timedelta(days=certificate.VALID_DAYS - certificate.RENEW_DAYS + 1)
    renewed = certificate.ensure(tmp_path, URI, HOST, NAME, later)
    assert renewed.renewed.startswith("expires on") and renewed.replaced == first.certificate
    assert renewed.certificate.subject == first.certificate.subject
    assert renewed.certificate.public_key() == first.certificate.public_key()
    # It chains to its predecessor: a peer that trusted the first accepts it (at that later time).
    pki.ensure_layout(tmp_path / "peer")
    (tmp_path / "peer" / "trusted" / "certs" / "first.der").write_bytes(first.cert_file.read_bytes())
    pki.check(tmp_path / "peer", renewed.certificate, URI, now=later)
    # A clock set back before its start renews once; the new one is valid then.
    back = later - dt.timedelta(days=30)
    assert "not valid before" in certificate.ensure(tmp_path, URI, HOST, NAME, back).renewed
    assert not certificate.ensure(tmp_path, URI, HOST, NAME, back + dt.timedelta(minutes=1)).renewed


def test_a_certificate_modelline_did_not_make_is_kept_and_said_to_be_due(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    cert_file, _ = issue(tmp_path, URI, NAME, not_after=now + dt.timedelta(days=10))
    before = cert_file.read_bytes()
    own = certificate.ensure(tmp_path, URI, HOST, NAME, now)  # HOST is not in it either: kept all the same
    assert not own.renewed and own.due.startswith("expires on") and cert_file.read_bytes() == before
    assert "expired" in certificate.ensure(tmp_path, URI, HOST, NAME, now + dt.timedelta(days=11)).due
    assert not certificate.made_here(x509.load_der_x509_certificate(before))


def test_a_foreign_certificate_without_its_key_is_refused_not_replaced(tmp_path: Path) -> None:
    cert_file, key_file = issue(tmp_path, URI, NAME)
    other, _ = issue(tmp_path / "other", URI, NAME)
    before = other.read_bytes()
    cert_file.write_bytes(before)  # the key in key.pem is not this certificate's
    with pytest.raises(UsageError, match="does not belong to"):
        certificate.ensure(tmp_path, URI, HOST, NAME)
    assert cert_file.read_bytes() == before and key_file.is_file()


def test_a_trusted_application_certificate_vouches_only_for_its_own_renewals(tmp_path: Path) -> None:
    """Self-signed application certificates may carry cA (asyncua's do): trusting one must not let its holder
    mint certificates for other applications, or other keys, that this trust list would accept."""
    trusted = certificate.ensure(tmp_path / "edge", URI, HOST, NAME)
    assert pki.is_ca(trusted.certificate)  # the reason for the rule
    key = trusted.key
    peer = pki.ensure_layout(tmp_path / "peer")
    pki.approve(peer, str(trusted.cert_file))
    minted = issue(tmp_path / "minted", "urn:modelline:gateway", "ModelLine Model Manager",
                   issuer=(trusted.certificate, key))  # type: ignore[arg-type]  # fmt: skip
    other_key = issue(tmp_path / "other-key", URI, NAME, issuer=(trusted.certificate, key))  # type: ignore[arg-type]
    for cert_file, uri in ((minted[0], "urn:modelline:gateway"), (other_key[0], URI)):
        with pytest.raises(pki.CertificateRefused) as refused:
            pki.check(peer, x509.load_der_x509_certificate(cert_file.read_bytes()), uri)
        assert refused.value.status == pki.BAD_CERTIFICATE_UNTRUSTED
