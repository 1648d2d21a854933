"""Logins, password hashes and roles."""

from __future__ import annotations

from pathlib import Path

import pytest
from asyncua.crypto.permission_rules import UserRole

from modelline.cli.main import main
from sdk import errors
from sdk.opcua.users import Role, RoleUser, UserStore, check_password, hash_password


def test_password_hashes() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$") and "correct" not in stored
    assert check_password("correct horse", stored)
    assert not check_password("wrong", stored)
    assert not check_password("correct horse", "plain-text")
    assert hash_password("x" * 8) != hash_password("x" * 8)  # salted


def test_roles_parse_and_order() -> None:
    assert Role.parse("engineer") is Role.ENGINEER and Role.parse("Security Admin") is Role.SECURITY_ADMIN
    assert Role.OBSERVER < Role.OPERATOR < Role.ENGINEER < Role.SECURITY_ADMIN
    with pytest.raises(errors.UsageError, match="is not Observer, Operator, Engineer or SecurityAdmin"):
        Role.parse("root")


def test_store_logins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users.toml"
    (tmp_path / "pw").write_text("s3cret-pass\n")
    assert (
        main(
            [
                "users",
                "add",
                "--file",
                str(users),
                "--name",
                "alice",
                "--role",
                "Engineer",
                "--password-file",
                str(tmp_path / "pw"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "users",
                "add",
                "--file",
                str(users),
                "--name",
                "bob",
                "--role",
                "operator",
                "--password-file",
                str(tmp_path / "pw"),
            ]
        )
        == 0
    )
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    store = UserStore.load(users)
    alice = store.get_user(None, "alice", "s3cret-pass")
    assert (
        isinstance(alice, RoleUser) and alice.modelline_role is Role.ENGINEER and alice.role == UserRole.User
    )  # never asyncua Admin
    bob = store.get_user(None, "bob", "s3cret-pass")
    assert isinstance(bob, RoleUser) and bob.modelline_role is Role.OPERATOR and bob.role == UserRole.User
    assert store.get_user(None, "alice", "wrong") is None
    assert store.get_user(None, "mallory", "s3cret-pass") is None
    anonymous = store.get_user(None)
    assert isinstance(anonymous, RoleUser) and anonymous.modelline_role is Role.OBSERVER
    assert main(["users", "anonymous", "--file", str(users), "--role", ""]) == 0
    assert UserStore.load(users).get_user(None) is None  # anonymous refused now
    assert UserStore.load(users).get_user(None, "alice", "s3cret-pass") is not None  # users kept
    capsys.readouterr()


def test_short_password_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "pw").write_text("short\n")
    assert (
        main(
            [
                "users",
                "add",
                "--file",
                str(tmp_path / "u.toml"),
                "--name",
                "a",
                "--role",
                "Observer",
                "--password-file",
                str(tmp_path / "pw"),
            ]
        )
        == 2
    )
    assert "at least 8 characters" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[users.x]\nrole = 'Engineer'\n")
    with pytest.raises(errors.UsageError, match="is invalid"):
        UserStore.load(tmp_path / "bad.toml")
    with pytest.raises(errors.NotFound):
        UserStore.load(tmp_path / "missing.toml")
