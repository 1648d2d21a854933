"""Logins, password hashes and roles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asyncua.crypto.permission_rules import UserRole

from modelline.cli.main import main
from sdk import audit, errors
from sdk.opcua.logins import LoginGuard, LoginPolicy
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


def test_passwd_remove_and_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users.toml"
    records: list[audit.AuditRecord] = []
    remove = audit.add_sink(records.append)
    try:
        monkeypatch.setenv("MODELLINE_NEW_PASSWORD", "first-password")
        for name, role in (("alice", "Engineer"), ("bob", "Observer")):
            assert main(["users", "add", "--file", str(users), "--name", name, "--role", role]) == 0
        monkeypatch.setenv("MODELLINE_NEW_PASSWORD", "second-password")
        assert main(["users", "passwd", "--file", str(users), "--name", "alice"]) == 0
        assert main(["users", "remove", "--file", str(users), "--name", "bob"]) == 0
        assert oct(users.stat().st_mode & 0o777) == "0o600"
        store = UserStore.load(users)
        assert store.check_login("alice", "second-password") is Role.ENGINEER
        assert store.check_login("alice", "first-password") is None
        assert store.check_login("bob", "first-password") is None
        capsys.readouterr()
        assert main(["users", "list", "--file", str(users), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"users": {"alice": "Engineer"}, "anonymous": "Observer"}
        assert main(["users", "passwd", "--file", str(users), "--name", "bob"]) == 4  # not found
        assert main(["users", "remove", "--file", str(users), "--name", "bob"]) == 4
        assert main(["users", "list", "--file", str(tmp_path / "missing.toml")]) == 4
    finally:
        remove()
    changes = [(r.action, r.outcome, r.target, r.detail.split(" ")[0]) for r in records]
    assert changes == [
        ("user", "ok", "alice", "added:"),
        ("user", "ok", "bob", "added:"),
        ("user", "ok", "alice", "password"),
        ("user", "ok", "bob", "removed"),
    ]
    assert not any("-password" in r.model_dump_json() for r in records)  # no password is recorded


def test_the_users_command_keeps_the_certificate_identities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A users file with a [certificates] table, edited by 'modelline users': the table stays, and counts."""
    users = tmp_path / "users.toml"
    users.write_text('anonymous = "Observer"\n[certificates]\n"urn:plant:scada-*" = "Operator"\n')
    monkeypatch.setenv("MODELLINE_NEW_PASSWORD", "first-password")
    assert main(["users", "add", "--file", str(users), "--name", "alice", "--role", "Engineer"]) == 0
    assert main(["users", "remove", "--file", str(users), "--name", "alice"]) == 0
    store = UserStore.load(users)
    from tests.tls import issue

    cert_file, _ = issue(tmp_path / "scada", "urn:plant:scada-line3", "SCADA")
    assert store.certificate_role(cert_file.read_bytes()) is Role.OPERATOR


def test_no_users_command_takes_a_password_as_an_argument() -> None:
    from modelline.cli.main import build_parser
    from tests.unit.sdk.test_cli import _all_parsers

    parsers = [parser for path, parser in _all_parsers(build_parser()) if path[:1] == ("users",)]
    assert len(parsers) == 6  # users and its five actions
    for parser in parsers:
        options = {o for action in parser._actions for o in action.option_strings}
        assert not {o for o in options if "pass" in o} - {"--password-file"}, options


async def test_failures_lock_out_a_user_and_then_a_host() -> None:
    now = [0.0]
    guard = LoginGuard(
        LoginPolicy(max_failures=2, max_failures_per_address=3, lockout_s=10.0, delay_s=0.0), clock=lambda: now[0]
    )
    store = UserStore({"alice": (Role.ENGINEER, hash_password("alice-password"))}, None)

    async def login(name: str, password: str, address: str = "10.0.0.1:5000") -> object:
        return (await guard.verify(name, password, address, store.check_login)).result

    assert await login("alice", "wrong") is None
    now[0] = 11.0  # out of the window: counted afresh
    assert await login("alice", "wrong") is None
    assert await login("alice", "alice-password") is Role.ENGINEER  # one failure in the window only
    assert await login("alice", "wrong") is None and await login("alice", "wrong") is None
    assert guard.locked_for("alice", "10.0.0.2") == 10.0
    assert await login("alice", "alice-password", "10.0.0.2:1") is None  # locked out, whatever the host
    now[0] = 21.5
    assert await login("alice", "alice-password", "10.0.0.2:1") is Role.ENGINEER
    for name in ("x", "y", "z"):  # one host guessing many names
        assert await login(name, "guess", "10.0.0.3:7") is None
    assert await login("alice", "alice-password", "10.0.0.3:8") is None  # that host is locked out
    assert await login("alice", "alice-password", "10.0.0.4:8") is Role.ENGINEER  # others are not
