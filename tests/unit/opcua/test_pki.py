"""Trust lists under strangers: a flood of made-up certificates, the trust command's folder and thumbprints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509

from modelline.cli.main import main
from sdk import audit
from sdk.opcua import pki
from sdk.opcua.certificate import ensure_certificate


def _made_up(folder: Path, n: int) -> x509.Certificate:
    cert_file, _ = ensure_certificate(folder / f"c{n}", f"urn:flood:{n}", "flood", f"flood {n}")
    return x509.load_der_x509_certificate(cert_file.read_bytes())


async def test_a_flood_of_made_up_certificates_is_bounded_on_disk_and_in_the_audit_trail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pki, "MAX_REJECTED", 5)
    monkeypatch.setattr(pki, "_refusals", {})
    server = pki.ensure_layout(tmp_path / "pki")
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    try:
        for n in range(14):
            with pytest.raises(pki.CertificateRefused):
                await pki.check_peer(server, _made_up(tmp_path, n), f"urn:flood:{n}", "10.0.0.9:4000")
        with pytest.raises(pki.CertificateRefused):  # another host is recorded on its own
            await pki.check_peer(server, _made_up(tmp_path, 99), "urn:flood:99", "10.0.0.7:4000")
    finally:
        remove()
    kept = pki.entries(server, "rejected")
    assert sorted(e.application_uri for e in kept) == [f"urn:flood:{n}" for n in (10, 11, 12, 13, 99)]
    refused = [r for r in records if (r.action, r.outcome) == ("certificate", "refused")]
    assert [r.address for r in refused] == ["10.0.0.9:4000"] * pki.AUDIT_REFUSALS_PER_MINUTE + ["10.0.0.7:4000"]
    # When the minute is over, the next record says how many were not recorded one by one.
    host, (start, recorded, skipped) = "10.0.0.9", pki._refusals["10.0.0.9"]
    assert skipped == 14 - pki.AUDIT_REFUSALS_PER_MINUTE
    pki._refusals[host] = (start - 61, recorded, skipped)
    assert pki._audit_refusal("10.0.0.9:4001") == (True, skipped)


def test_the_trust_command_works_on_the_folder_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    monkeypatch.delenv("MODELLINE_PKI_DIR", raising=False)
    folder = pki.ensure_layout(tmp_path / "cli-pki")
    cert = _made_up(tmp_path, 1)
    pki.reject(folder, cert)
    # `modelline --pki-dir DIR trust ...` is the CLI's folder DIR, as for every other command.
    assert main(["--pki-dir", str(folder), "trust", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["certificates"]
    assert [(c["list"], c["thumbprint"]) for c in listed] == [("rejected", pki.thumbprint(cert))]
    assert not (tmp_path / "home-config").exists()
    # A thumbprint too short to name one certificate safely is refused as such, not "not found".
    assert main(["--pki-dir", str(folder), "trust", "approve", pki.thumbprint(cert)[:4]]) == 2
    assert "at least 6 hex digits" in capsys.readouterr().err
    # Approving the certificate's file also ends its wait in rejected/.
    cert_file = tmp_path / "c1" / "cert.der"
    assert main(["trust", "approve", "--pki-dir", str(folder), str(cert_file)]) == 0
    assert [e.list for e in pki.entries(folder)] == ["trusted"]
