"""`modelline users add`: keep a users file (logins and OPC UA roles) for the gateway and edge nodes."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import tomllib
from pathlib import Path

from modelline.cli.common import add_json
from modelline.cli.output import Output
from sdk.errors import UsageError

_EXAMPLE = """Examples:
  modelline users add --file /etc/modelline/users.toml --name alice --role Engineer
  modelline users add --file users.toml --name scada --role Observer --password-file scada.pw
  modelline users anonymous --file users.toml --role ""       # refuse clients that do not log in

Roles (OPC 10000-3): Observer reads and subscribes; Operator also resumes after an error; Engineer
installs models, binds tags and confirms updates; SecurityAdmin also manages users."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `users add` and `users anonymous`."""
    users = commands.add_parser("users", help="manage logins and roles", formatter_class=formatter, epilog=_EXAMPLE)
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add", help="add a user or change a user's password and role", formatter_class=formatter, epilog=_EXAMPLE
    )
    add.add_argument("--file", type=Path, required=True, help="the users file (TOML); created if missing")
    add.add_argument("--name", required=True, help="login name")
    add.add_argument("--role", required=True, help="Observer, Operator, Engineer or SecurityAdmin")
    add.add_argument("--password-file", type=Path, metavar="FILE", help="read the password from a file (else asked)")
    add_json(add)
    add.set_defaults(handler=_add)
    anon = sub.add_parser(
        "anonymous", help="set the role of clients that do not log in", formatter_class=formatter, epilog=_EXAMPLE
    )
    anon.add_argument("--file", type=Path, required=True, help="the users file (TOML); created if missing")
    anon.add_argument("--role", required=True, help='Observer, Operator, Engineer, or "" to refuse them')
    add_json(anon)
    anon.set_defaults(handler=_anonymous)


def _read(path: Path) -> dict[str, object]:
    if not path.exists():
        return {"anonymous": "Observer", "users": {}}
    from sdk.opcua.users import UserStore

    UserStore.load(path)  # refuse to edit a file that does not load
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _write(path: Path, data: dict[str, object]) -> None:
    lines = [
        "# ModelLine users: written by 'modelline users'. Passwords are scrypt hashes.",
        f"anonymous = {json.dumps(data.get('anonymous', 'Observer'))}",
        "",
    ]
    users = data.get("users", {})
    assert isinstance(users, dict)
    for name, entry in sorted(users.items()):
        lines += [
            f"[users.{json.dumps(name)}]",
            f"role = {json.dumps(entry['role'])}",
            f"password = {json.dumps(entry['password'])}",
            "",
        ]
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, path)


def _add(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.users import Role, hash_password  # asyncua: only when a user is added

    role = Role.parse(args.role)
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise UsageError("the passwords differ")
    if len(password) < 8:
        raise UsageError("a password needs at least 8 characters")
    data = _read(args.file)
    users = data.setdefault("users", {})
    assert isinstance(users, dict)
    users[args.name] = {"role": role.label, "password": hash_password(password)}
    _write(args.file, data)
    out.result({"ok": True, "name": args.name, "role": role.label}, f"{args.name}: {role.label} (in {args.file})")
    return 0


def _anonymous(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.users import Role

    label = Role.parse(args.role).label if args.role else ""
    data = _read(args.file)
    data["anonymous"] = label
    _write(args.file, data)
    out.result({"ok": True, "anonymous": label or None}, f"anonymous clients: {label or 'refused'} (in {args.file})")
    return 0
