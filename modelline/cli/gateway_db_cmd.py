"""`modelline gateway recover | backup | restore`: the gateway's database, while the gateway is stopped (or, for
backup, running)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from gateway.settings import GatewaySettings
from gateway.store import files
from modelline.cli.common import add_json
from modelline.cli.output import Output
from sdk.errors import UsageError
from sdk.keys import TrustStore
from sdk.settings import load_settings

_RECOVER_EXAMPLE = """Example:
  modelline gateway recover --data-dir /var/lib/modelline/gateway --trust /etc/modelline/trust

Stop the gateway first. Every package in <data dir>/packages is verified again against the trust store
and its model version written into a new database; the old database (if any) is renamed aside with a
timestamp, never deleted. Packages that fail are listed and left in place. Devices and deployments are
not in the packages and cannot be recovered: edge nodes with gateway_url set register again when they
next start; add the others with 'modelline devices add'."""

_BACKUP_EXAMPLE = """Example:
  modelline gateway backup --data-dir /var/lib/modelline/gateway
  modelline gateway backup --data-dir /var/lib/modelline/gateway --to /mnt/backup/modelline --json

Safe while the gateway runs: it uses SQLite's online backup API, not a file copy. Backups go to
<data dir>/backups unless --to (or backup_dir in --config) says otherwise. A running gateway also
makes them by itself every backup_interval_s and keeps the newest backup_keep."""

_RESTORE_EXAMPLE = """Example:
  modelline gateway restore --data-dir /var/lib/modelline/gateway \\
      --from /var/lib/modelline/gateway/backups/gateway-20261130T120000.000000Z.sqlite3

Stop the gateway first (restore refuses while it runs). The database it replaces is renamed aside
with a timestamp, never deleted."""


def register(gateway: argparse.ArgumentParser, formatter: type[argparse.HelpFormatter]) -> None:
    """Add `recover`, `backup` and `restore` under `modelline gateway` (which still runs the gateway without them)."""
    commands = gateway.add_subparsers(
        dest="gateway_command", metavar="COMMAND", required=False, help="recover, backup or restore (none: run it)"
    )

    recover = commands.add_parser(
        "recover",
        help="rebuild a stopped gateway's model versions from its package store",
        formatter_class=formatter,
        epilog=_RECOVER_EXAMPLE,
    )
    _add_data_dir(recover)
    recover.add_argument(
        "--trust",
        type=Path,
        metavar="DIR",
        help="trust store: folder of root certificates (*.pem) and CRLs (*.crl); legacy *.pub keys",
    )
    recover.add_argument("--force", action="store_true", help="rebuild even if the database is healthy")
    recover.add_argument("--quiet", action="store_true", help="no progress bar")
    add_json(recover)
    recover.set_defaults(handler=_recover)

    backup = commands.add_parser(
        "backup", help="back the gateway's database up now", formatter_class=formatter, epilog=_BACKUP_EXAMPLE
    )
    _add_data_dir(backup)
    backup.add_argument("--to", type=Path, metavar="DIR", help="backup folder (default <data dir>/backups)")
    add_json(backup)
    backup.set_defaults(handler=_backup)

    restore = commands.add_parser(
        "restore",
        help="put a backup in place as a stopped gateway's database",
        formatter_class=formatter,
        epilog=_RESTORE_EXAMPLE,
    )
    _add_data_dir(restore)
    restore.add_argument(
        "--from", dest="source", type=Path, required=True, metavar="BACKUP", help="the backup file to restore"
    )
    add_json(restore)
    restore.set_defaults(handler=_restore)


def _result(out: Output, data: dict[str, Any], lines: list[str]) -> None:
    """The result as JSON, or as lines of plain text: paths and reasons are never wrapped or read as markup."""
    if out.as_json:
        out.result(data)
    else:
        out.out.print("\n".join(lines), soft_wrap=True, markup=False)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="the gateway's data folder")
    parser.add_argument("--config", type=Path, metavar="FILE", help="the gateway's settings file (TOML)")


def _settings(args: argparse.Namespace) -> GatewaySettings:
    return load_settings(GatewaySettings, args.config, data_dir=args.data_dir, trust_dir=getattr(args, "trust", None))


async def _recover(args: argparse.Namespace, out: Output) -> int:
    from gateway.models.recovery import recover

    s = _settings(args)
    if not s.data_dir.is_dir():
        raise UsageError(f"data folder {s.data_dir} does not exist")
    lock = await asyncio.to_thread(files.lock_data_dir, s.data_dir, "recovering its database")
    try:
        problem = await asyncio.to_thread(files.problem, s.db_path) if s.db_path.exists() else "missing"
        if problem is None and not args.force:
            raise UsageError(
                f"the database of data folder {s.data_dir} is healthy; recover would replace it and forget its "
                "devices and deployments: pass --force to rebuild it anyway"
            )
        trust = await asyncio.to_thread(TrustStore.load_policy, s.trust_dir, s.approval_trust_dir)
        with out.transfer("verifying packages") as bar:
            report = await recover(
                s.data_dir,
                trust,
                lambda _path, done, total: bar(done, total),
                aside="damaged" if problem else "replaced",
            )
    finally:
        lock.close()
    failed = [{"file": str(path), "reason": reason} for path, reason in report.failed.items()]
    lost = (
        "devices and deployments cannot be recovered from packages: edge nodes with gateway_url set register "
        "again when they next start; add the others with 'modelline devices add'"
    )
    lines = [f"left in place: {path.name}: {reason}" for path, reason in report.failed.items()]
    if report.kept_aside is not None:
        lines.append(f"the old database was kept as {report.kept_aside}")
    lines.append(lost)
    lines.append(
        f"recovered {len(report.recovered)} model version(s) from {report.packages} package(s) into "
        f"{report.database}; {len(failed)} package(s) failed verification and were left in place"
    )
    _result(
        out,
        {
            "ok": True,
            "database": str(report.database),
            "recovered": [
                {"name": r.name, "version": r.version, "sha256": r.sha256, "signer": r.signer} for r in report.recovered
            ],
            "failed": failed,
            "packages": report.packages,
            "kept_aside": str(report.kept_aside) if report.kept_aside else None,
            "devices_recovered": False,
            "note": lost,
        },
        lines,
    )
    return 0


async def _backup(args: argparse.Namespace, out: Output) -> int:
    s = _settings(args)
    folder = args.to or s.backups_dir
    path = await asyncio.to_thread(files.backup, s.db_path, folder)
    size = path.stat().st_size
    _result(
        out,
        {"ok": True, "database": str(s.db_path), "backup": str(path), "bytes": size},
        [f"backed up {s.db_path} to {path} ({size} bytes)"],
    )
    return 0


def _compare_with_store(data_dir: Path) -> tuple[list[Path], list[str]]:
    """Packages in the store that the (restored) database does not list (pushed after the backup), and versions
    it lists whose package file is not in the store (a backup from another data folder)."""
    with closing(sqlite3.connect(f"file:{data_dir / files.DB_NAME}?mode=ro", uri=True)) as db:
        listed = {
            row[0]: f"{row[1]} {row[2]}" for row in db.execute("SELECT sha256, name, version FROM model_versions")
        }
    stored = files.package_files(data_dir)
    present = {p.stem for p in stored}
    return [p for p in stored if p.stem not in listed], [v for sha, v in listed.items() if sha not in present]


async def _restore(args: argparse.Namespace, out: Output) -> int:
    s = _settings(args)
    lock = await asyncio.to_thread(files.lock_data_dir, s.data_dir, "restoring its database")
    try:
        aside = await asyncio.to_thread(files.restore, s.data_dir, args.source)
        unknown, missing = await asyncio.to_thread(_compare_with_store, s.data_dir)
    finally:
        lock.close()
    lines = [f"the replaced database was kept as {aside}"] if aside else []
    if unknown:
        lines.append(
            f"{len(unknown)} package(s) in {s.packages_dir} are newer than this backup; push them again to serve "
            f"them (modelline push {unknown[0]} --gateway URL)"
        )
    if missing:
        lines.append(
            f"{len(missing)} version(s) of this backup have no package file in {s.packages_dir} "
            f"({', '.join(missing[:3])}): copy the packages folder that belongs to this backup"
        )
    lines.append(f"restored {args.source} into {s.db_path}")
    _result(
        out,
        {
            "ok": True,
            "database": str(s.db_path),
            "restored_from": str(args.source),
            "kept_aside": str(aside) if aside else None,
            "packages_not_in_backup": [str(p) for p in unknown],
            "versions_without_package": missing,
        },
        lines,
    )
    return 0
