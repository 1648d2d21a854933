"""Key files, key ids, passphrases and trust stores."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sdk import errors
from sdk.keys import PASSPHRASE_ENV, TrustStore, generate_key_pair, key_id, load_private_key, load_public_key


def test_generated_private_key_is_owner_only_and_id_is_stable(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path / "keys")
    assert stat.S_IMODE(files.private_path.stat().st_mode) == 0o600
    assert files.private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert files.public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key(files.public_path)) == files.key_id
    assert key_id(load_private_key(files.private_path).public_key()) == files.key_id
    renamed = tmp_path / "anything.pub"
    renamed.write_bytes(files.public_path.read_bytes())
    assert TrustStore.load(renamed).key_ids == [files.key_id]


def test_existing_private_key_is_never_overwritten(tmp_path: Path) -> None:
    first = generate_key_pair(tmp_path)
    before = first.private_path.read_bytes()
    with pytest.raises(errors.UsageError, match="already exists"):
        generate_key_pair(tmp_path)
    assert first.private_path.read_bytes() == before


def test_passphrase_protected_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    files = generate_key_pair(tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in files.private_path.read_bytes()
    with pytest.raises(errors.KeyFileError, match="is encrypted: give its passphrase"):
        load_private_key(files.private_path)
    with pytest.raises(errors.KeyFileError, match="passphrase is wrong"):
        load_private_key(files.private_path, b"wrong")
    assert key_id(load_private_key(files.private_path, b"correct horse").public_key()) == files.key_id
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    assert key_id(load_private_key(files.private_path).public_key()) == files.key_id


def test_non_ed25519_keys_are_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ec.key").write_bytes(pem)
    with pytest.raises(errors.KeyFileError, match="not an Ed25519 key"):
        load_private_key(tmp_path / "ec.key")
    (tmp_path / "ec.pub").write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(errors.KeyFileError, match="not an Ed25519 key"):
        TrustStore.load(tmp_path)


def test_trust_store_folder(tmp_path: Path) -> None:
    a = generate_key_pair(tmp_path / "a", name="a")
    b = generate_key_pair(tmp_path / "b", name="b")
    trust = tmp_path / "trust"
    trust.mkdir()
    for f in (a.public_path, b.public_path):
        (trust / f.name).write_bytes(f.read_bytes())
    (trust / "README.txt").write_text("only *.pub files count")
    store = TrustStore.load(trust)
    assert store.key_ids == sorted([a.key_id, b.key_id])
    assert a.key_id in store and "0" * 32 not in store


def test_empty_or_missing_trust_store(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="does not exist"):
        TrustStore.load(tmp_path / "nope")
    with pytest.raises(errors.KeyFileError, match="holds no root certificates"):
        TrustStore.load(tmp_path)
