"""`modelline users add | passwd | remove | list | anonymous`: keep a users file (logins and OPC UA roles)
for the gateway and edge nodes.

A password comes from a prompt (asked twice), ``--password-file`` or $MODELLINE_NEW_PASSWORD, never
from the command line. The file is written with mode 0600 and every change is audited (sdk.audit,
action "user")."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import tomllib
from pathlib import Path

from modelline.cli.common import add_json
from modelline.cli.output import Output
from sdk.errors import NotFound, UsageError

NEW_PASSWORD_ENV = "MODELLINE_NEW_PASSWORD"

_EXAMPLE = """Examples:
  modelline users add --file /etc/modelline/users.toml --name alice --role Engineer
  modelline users add --file users.toml --name scada --role Observer --password-file scada.pw
  modelline users passwd --file users.toml --name alice       # asks for the new password twice
  modelline users remove --file users.toml --name scada
  modelline users list --file users.toml
  modelline users anonymous --file users.toml --role ""       # refuse clients that do not log in

Roles (OPC 10000-3): Observer reads and subscribes; Operator also resumes after an error; Engineer
installs models, binds tags and confirms updates; SecurityAdmin also manages users."""


def register(commands: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:  # type: ignore[type-arg]
    """Add `users add | passwd | remove | list | anonymous`."""
    users = commands.add_parser("users", help="manage logins and roles", formatter_class=formatter, epilog=_EXAMPLE)
    sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add", help="add a user or change a user's password and role", formatter_class=formatter, epilog=_EXAMPLE
    )
    add.add_argument("--file", type=Path, required=True, help="the users file (TOML); created if missing")
    add.add_argument("--name", required=True, help="login name")
    add.add_argument("--role", required=True, help="Observer, Operator, Engineer or SecurityAdmin")
    _password_source(add)
    add_json(add)
    add.set_defaults(handler=_add)
    passwd = sub.add_parser("passwd", help="change a user's password", formatter_class=formatter, epilog=_EXAMPLE)
    passwd.add_argument("--file", type=Path, required=True, help="the users file (TOML)")
    passwd.add_argument("--name", required=True, help="login name")
    _password_source(passwd)
    add_json(passwd)
    passwd.set_defaults(handler=_passwd)
    remove = sub.add_parser("remove", help="remove a user", formatter_class=formatter, epilog=_EXAMPLE)
    remove.add_argument("--file", type=Path, required=True, help="the users file (TOML)")
    remove.add_argument("--name", required=True, help="login name")
    add_json(remove)
    remove.set_defaults(handler=_remove)
    listing = sub.add_parser(
        "list", help="list the users, their roles and the anonymous role", formatter_class=formatter, epilog=_EXAMPLE
    )
    listing.add_argument("--file", type=Path, required=True, help="the users file (TOML)")
    add_json(listing)
    listing.set_defaults(handler=_list)
    anon = sub.add_parser(
        "anonymous", help="set the role of clients that do not log in", formatter_class=formatter, epilog=_EXAMPLE
    )
    anon.add_argument("--file", type=Path, required=True, help="the users file (TOML); created if missing")
    anon.add_argument("--role", required=True, help='Observer, Operator, Engineer, or "" to refuse them')
    add_json(anon)
    anon.set_defaults(handler=_anonymous)


def _password_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"read the password from a file (or set ${NEW_PASSWORD_ENV}; else it is asked for)",
    )


def _new_password(args: argparse.Namespace) -> str:
    password: str
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    elif NEW_PASSWORD_ENV in os.environ:
        password = os.environ[NEW_PASSWORD_ENV]
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise UsageError("the passwords differ")
    if len(password) < 8:
        raise UsageError("a password needs at least 8 characters")
    return password


def _audit(target: str, detail: str) -> None:
    from sdk import audit

    audit.record("user", "ok", who=f"local:{getpass.getuser()}", target=target, detail=detail)


def _users_of(data: dict[str, object]) -> dict[str, dict[str, str]]:
    users = data.setdefault("users", {})
    assert isinstance(users, dict)
    return users


def _read(path: Path, must_exist: bool = False) -> dict[str, object]:
    if not path.exists():
        if must_exist:
            raise NotFound(f"users file {path} does not exist")
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
    certificates = data.get("certificates", {})  # certificate identities' roles, kept as they were
    assert isinstance(certificates, dict)
    if certificates:
        lines += [
            "[certificates]",
            *(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in sorted(certificates.items())),
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
    password = _new_password(args)
    data = _read(args.file)
    users = _users_of(data)
    existed = args.name in users
    users[args.name] = {"role": role.label, "password": hash_password(password)}
    _write(args.file, data)
    _audit(args.name, f"{'changed' if existed else 'added'}: {role.label}, password set (in {args.file})")
    out.result({"ok": True, "name": args.name, "role": role.label}, f"{args.name}: {role.label} (in {args.file})")
    return 0


def _passwd(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.users import hash_password

    data = _read(args.file, must_exist=True)
    users = _users_of(data)
    if args.name not in users:
        raise NotFound(f"no user {args.name!r} in {args.file}")
    users[args.name]["password"] = hash_password(_new_password(args))
    _write(args.file, data)
    _audit(args.name, f"password changed (in {args.file})")
    out.result({"ok": True, "name": args.name}, f"{args.name}: password changed (in {args.file})")
    return 0


def _remove(args: argparse.Namespace, out: Output) -> int:
    data = _read(args.file, must_exist=True)
    users = _users_of(data)
    if users.pop(args.name, None) is None:
        raise NotFound(f"no user {args.name!r} in {args.file}")
    _write(args.file, data)
    _audit(args.name, f"removed (from {args.file})")
    out.result({"ok": True, "name": args.name}, f"{args.name}: removed (from {args.file})")
    return 0


def _list(args: argparse.Namespace, out: Output) -> int:
    data = _read(args.file, must_exist=True)
    users = {name: entry["role"] for name, entry in sorted(_users_of(data).items())}
    anonymous = str(data.get("anonymous", "Observer")) or None
    lines = [f"{name}\t{role}" for name, role in users.items()]
    lines.append(f"(anonymous)\t{anonymous or 'refused'}")
    out.result({"users": users, "anonymous": anonymous}, "\n".join(lines))
    return 0


def _anonymous(args: argparse.Namespace, out: Output) -> int:
    from sdk.opcua.users import Role

    label = Role.parse(args.role).label if args.role else ""
    data = _read(args.file)
    data["anonymous"] = label
    _write(args.file, data)
    _audit("anonymous", f"role {label or 'refused'} (in {args.file})")
    out.result({"ok": True, "anonymous": label or None}, f"anonymous clients: {label or 'refused'} (in {args.file})")
    return 0
