"""The `modelline` command: exit codes, one-line errors, JSON output, help with examples."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelline.cli.main import build_parser, main
from tests.conftest import read_members, write_members


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _all_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _all_parsers(sub, (*path, name))
    return found


def test_every_leaf_command_has_help_with_an_example() -> None:
    leaves = [
        (p, sp)
        for p, sp in _all_parsers(build_parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in sp._actions)
    ]
    assert {" ".join(p) for p, _ in leaves} >= {
        "keys generate",
        "package build",
        "package inspect",
        "package verify",
        "package sign",
        "pull sagemaker",
        "pull s3",
        "demo",
    }
    for path, parser in leaves:
        text = parser.format_help()
        assert "Example" in text, f"'modelline {' '.join(path)} --help' has no example"
        assert f"modelline {' '.join(path)}" in text.split("Example", 1)[1], path


def test_every_command_group_has_help_with_worked_examples() -> None:
    groups = [
        (p, sp)
        for p, sp in _all_parsers(build_parser())
        if any(isinstance(a, argparse._SubParsersAction) for a in sp._actions)
    ]
    assert {" ".join(p) for p, _ in groups} >= {"", "keys", "package", "pull", "devices", "users"}
    for path, parser in groups:
        text = parser.format_help()
        assert "Example" in text, f"'modelline {' '.join(path)} --help' has no example"
        examples = text.split("Example", 1)[1]
        actions = [name for a in parser._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices]
        for action in actions if path else actions[:1]:  # a group shows each of its actions at work
            assert f"modelline {' '.join((*path, action))} " in examples, (path, action)


HEAVY = ("asyncua", "onnxruntime", "numpy", "boto3", "botocore", "onnx", "rich", "cryptography")


@pytest.mark.parametrize(
    "argv",
    [["--version"], ["--help"]]
    + [
        [*path, "--help"]
        for path, _ in _all_parsers(build_parser())
        if path  # every command and action
    ],
    ids=lambda argv: " ".join(argv),
)
def test_version_and_help_load_no_heavy_library(argv: list[str]) -> None:
    """`modelline --version` and every --help start at once: they import no OPC UA, ML, cloud or UI library."""
    wrapper = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n'))\n"
        "from modelline.cli.main import run\n"
        "sys.argv = ['modelline', *sys.argv[1:]]\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "modelline" in done.stdout
    loaded = done.stderr.rsplit("MODULES ", 1)[1].split()
    heavy = sorted({name for name in loaded if name.split(".")[0] in HEAVY})
    assert heavy == [], f"modelline {' '.join(argv)} imported {heavy[:8]}"


def _build_argv(example: Path, out: Path, *signing: str) -> list[str]:
    return [
        "package",
        "build",
        str(example / "model.onnx"),
        "--name",
        "pump-health",
        "--version",
        "1.0.0",
        "--spec",
        str(example / "spec.toml"),
        *signing,
        "-o",
        str(out),
    ]


def test_keys_build_inspect_verify_approve_flow(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, example: Path
) -> None:
    keys, trust, approvers = tmp_path / "keys", tmp_path / "trust", tmp_path / "approvers"
    code, out, _ = _run(capsys, "keys", "generate", "--out", str(keys), "--organization", "Plant 3", "--json")
    assert code == 0
    made = json.loads(out)
    assert made["subject"] == "O=Plant 3,CN=signing" and made["algorithm"] == "ec-p256"
    trust.mkdir()
    shutil.copy(made["certificate"], trust / "author-root.pem")

    pkg = tmp_path / "pump.uadipkg"
    cert, key = str(keys / "signing.pem"), str(keys / "signing.key")
    code, out, err = _run(capsys, *_build_argv(example, pkg, "--cert", cert, "--key", key))
    assert code == 0, err
    assert "signed by O=Plant 3,CN=signing" in out

    code, out, _ = _run(capsys, "package", "inspect", str(pkg), "--json", "--trust", str(trust))
    assert code == 0
    shown = json.loads(out)
    assert shown["format"] == "uadipkg" and shown["signature"]["valid"] is True
    assert shown["package_metadata"]["Manufacturer"] == "Plant 3"
    assert [s["role"] for s in shown["signatures"]] == ["author"]
    assert shown["manifest"]["inputs"][0]["features"][2]["units"] == "bar"

    code, out, _ = _run(capsys, "package", "inspect", str(pkg))
    assert code == 0
    for expected in ("pump-health 1.0.0", "discharge_pressure", "m³/h", "[batch, 5]", "Signatures", shown["sha256"]):
        assert expected in out

    code, out, _ = _run(capsys, "package", "verify", str(pkg), "--trust", str(trust), "--json")
    assert code == 0
    verified = json.loads(out)
    assert (verified["signer"], verified["files"], verified["samples"]) == ("O=Plant 3,CN=signing", 1, "3 reproduced")

    # The plant's approver: a CSR-free self-signed certificate of its own hierarchy.
    code, out, _ = _run(
        capsys, "keys", "generate", "--out", str(approvers), "--name", "plant", "--json", "--algorithm", "rsa-3072"
    )
    assert code == 0
    plant = json.loads(out)
    need_approval = ["package", "verify", "--trust", str(trust), "--approval-trust", plant["certificate"]]
    code, _, err = _run(capsys, *need_approval[:2], str(pkg), *need_approval[2:])
    assert code == 3 and "approval required and not given" in err and err.count("\n") == 1

    approved = tmp_path / "approved.uadipkg"
    code, out, err = _run(
        capsys,
        "package",
        "approve",
        str(pkg),
        "--cert",
        plant["certificate"],
        "--key",
        plant["private_key"],
        "--trust",
        str(trust),
        "-o",
        str(approved),
    )
    assert code == 0, err
    assert "signature 002 by CN=plant" in out
    code, out, err = _run(capsys, *need_approval[:2], str(approved), *need_approval[2:])
    assert code == 0, err
    assert "approved by CN=plant" in out
    code, out, _ = _run(capsys, "package", "inspect", str(approved), "--json")
    assert [(s["role"], s["subject"]) for s in json.loads(out)["signatures"]] == [
        ("author", "O=Plant 3,CN=signing"),
        ("approver", "CN=plant"),
    ]


def test_csr_for_the_plant_ca(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from cryptography import x509

    code, out, _ = _run(
        capsys, "keys", "generate", "--out", str(tmp_path), "--csr", "--common-name", "Line 3", "--json"
    )
    assert code == 0
    made = json.loads(out)
    assert made["certificate"] is None
    request = x509.load_pem_x509_csr(Path(made["csr"]).read_bytes())
    assert request.is_signature_valid and request.subject.rfc4514_string() == "CN=Line 3"


def test_legacy_package_converts_and_warns(
    capsys: pytest.CaptureFixture[str], legacy_package: Path, signer: object, tmp_path: Path
) -> None:
    trust = str(signer.trust_dir)  # type: ignore[attr-defined]
    code, out, err = _run(capsys, "package", "verify", str(legacy_package), "--trust", trust)
    assert code == 0 and "deprecated" in err
    new = tmp_path / "new.uadipkg"
    code, out, err = _run(
        capsys,
        "package",
        "convert",
        str(legacy_package),
        "--trust",
        trust,
        "--cert",
        str(signer.cert_path),
        "--key",
        str(signer.key_path),
        "-o",
        str(new),  # type: ignore[attr-defined]
    )
    assert code == 0, err
    code, out, err = _run(capsys, "package", "verify", str(new), "--trust", trust, "--json")
    assert code == 0 and json.loads(out)["format"] == "uadipkg" and "deprecated" not in err


def test_rejected_package_is_one_line_exit_3(
    capsys: pytest.CaptureFixture[str], package: Path, signer: object, tmp_path: Path
) -> None:
    members = read_members(package)
    members["CONTENT/model.onnx"] = members["CONTENT/model.onnx"][:-1] + b"\x00"
    bad = write_members(tmp_path / "bad.uadipkg", list(members.items()))
    code, out, err = _run(capsys, "package", "verify", str(bad), "--trust", str(signer.trust_dir))  # type: ignore[attr-defined]
    assert code == 3
    assert err.count("\n") == 1 and err.startswith("modelline: package rejected: file 'model.onnx'")
    assert "Traceback" not in err

    code, out, err = _run(capsys, "package", "verify", str(bad), "--trust", str(signer.trust_dir), "--json")  # type: ignore[attr-defined]
    assert code == 3
    assert json.loads(out)["error"] == "FileMismatch"


def test_inspect_with_wrong_trust_exits_3(
    capsys: pytest.CaptureFixture[str], package: Path, other_signer: object
) -> None:
    code, out, _ = _run(capsys, "package", "inspect", str(package), "--trust", str(other_signer.trust_dir))  # type: ignore[attr-defined]
    assert code == 3
    assert "REJECTED" in out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["package", "verify", "{tmp}/none.mlpkg", "--trust", "{trust}"], 4, "package {tmp}/none.mlpkg does not exist"),
        (
            ["package", "build", "{tmp}/none.onnx", "--name", "a", "--version", "1.0.0", "-o", "{tmp}/x.mlpkg"],
            4,
            "model file {tmp}/none.onnx does not exist",
        ),
        (
            ["package", "build", "{example}/model.onnx", "--name", "a", "--version", "v1", "-o", "{tmp}/x.mlpkg"],
            2,
            "version: version 'v1' is not a semantic version like 1.2.0 (at most 64 characters)",
        ),
        (
            [
                "package",
                "build",
                "{example}/model.onnx",
                "--name",
                "a",
                "--version",
                "1.0.0",
                "--key",
                "{tmp}/no.key",
                "-o",
                "{tmp}/x.mlpkg",
            ],
            4,
            "signing key {tmp}/no.key does not exist",
        ),
        (
            ["package", "verify", "{example}/model.onnx", "--trust", "{tmp}/none"],
            4,
            "trust store {tmp}/none does not exist",
        ),
        (  # the missing package is the first thing to say, before any trust store problem
            ["package", "verify", "{tmp}/nosuch.mlpkg", "--trust", "{tmp}/x"],
            4,
            "package {tmp}/nosuch.mlpkg does not exist",
        ),
        (
            ["keys", "generate", "--out", "{tmp}/k", "--encrypt"],
            2,
            "--encrypt needs a passphrase: set $MODELLINE_KEY_PASSPHRASE or give --passphrase-file",
        ),
    ],
)
def test_errors_are_one_line_with_exit_codes(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    signer: object,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.delenv("MODELLINE_KEY_PASSPHRASE", raising=False)
    fill = {"tmp": str(tmp_path), "example": str(example), "trust": str(signer.trust_dir)}  # type: ignore[attr-defined]
    got, _, err = _run(capsys, *(a.format(**fill) for a in argv))
    assert (got, err) == (code, f"modelline: {message.format(**fill)}\n")


def test_unsigned_build_says_so_and_is_refused(
    capsys: pytest.CaptureFixture[str], example: Path, tmp_path: Path, signer: object
) -> None:
    pkg = tmp_path / "u.uadipkg"
    code, out, err = _run(
        capsys, "package", "build", str(example / "model.onnx"), "--name", "u", "--version", "0.1.0", "-o", str(pkg)
    )
    assert code == 0 and "not signed" in err and "unsigned" in out
    code, _, err = _run(capsys, "package", "verify", str(pkg), "--trust", str(signer.trust_dir))  # type: ignore[attr-defined]
    assert code == 3 and "not signed" in err


def test_legacy_sign_still_works(
    capsys: pytest.CaptureFixture[str], example: Path, tmp_path: Path, signer: object
) -> None:
    pkg = tmp_path / "u.mlpkg"
    key = str(signer.files.private_path)  # type: ignore[attr-defined]
    code, _, err = _run(capsys, *_build_argv(example, pkg, "--key", key))
    assert code == 0 and "legacy .mlpkg" in err
    code, out, err = _run(capsys, "package", "sign", str(pkg), "--key", key)
    assert code == 0 and "deprecated" in err
    code, _, _ = _run(capsys, "package", "verify", str(pkg), "--trust", str(signer.trust_dir))  # type: ignore[attr-defined]
    assert code == 0


def test_encrypted_key_through_the_cli(
    capsys: pytest.CaptureFixture[str], example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELLINE_KEY_PASSPHRASE", raising=False)
    (tmp_path / "pass.txt").write_text("s3cret\n")
    code, _, _ = _run(
        capsys, "keys", "generate", "--out", str(tmp_path / "k"), "--passphrase-file", str(tmp_path / "pass.txt")
    )
    assert code == 0
    build = [
        "package",
        "build",
        str(example / "model.onnx"),
        "--name",
        "e",
        "--version",
        "1.0.0",
        "--cert",
        str(tmp_path / "k" / "signing.pem"),
        "--key",
        str(tmp_path / "k" / "signing.key"),
        "-o",
        str(tmp_path / "e.uadipkg"),
    ]
    code, _, err = _run(capsys, *build)
    assert code == 2 and "give its passphrase" in err
    code, _, err = _run(capsys, *build, "--passphrase-file", str(tmp_path / "pass.txt"))
    assert code == 0, err


def test_installed_console_script(tmp_path: Path, signer: object) -> None:
    script = Path(sys.executable).parent / "modelline"
    trust = str(signer.trust_dir)  # type: ignore[attr-defined]
    done = subprocess.run(
        [str(script), "package", "verify", str(tmp_path / "x.mlpkg"), "--trust", trust],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 4
    assert done.stderr == f"modelline: package {tmp_path}/x.mlpkg does not exist\n"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.startswith("modelline ")


def test_a_login_without_a_password_says_where_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELLINE_PASSWORD", raising=False)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)  # a script: nobody to ask
    code = main(["status", "--gateway", "opc.tcp://127.0.0.1:4840/modelline/", "--user", "alice"])
    assert code == 2
    assert capsys.readouterr().err == (
        "modelline: no password for user 'alice': give --password-file or set MODELLINE_PASSWORD\n"
    )


def test_library_loggers_stay_quiet_unless_debugging(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import logging

    code, _, _ = _run(capsys, "users", "anonymous", "--file", str(tmp_path / "u.toml"), "--role", "Observer")
    assert code == 0
    for library in ("asyncua", "apscheduler"):  # e.g. apscheduler's "Run time of job ... was missed"
        assert logging.getLogger(library).getEffectiveLevel() == logging.ERROR
