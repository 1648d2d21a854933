"""Writing package zips in one pass (sdk/package/zipwrite.py), reading the ONNX facts without onnx.load, and a
package file read through once for its verification (sdk/package/stream.py read_through)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sdk.errors import UnsafeArchiveEntry
from sdk.package import zipwrite
from sdk.package.archive import write_package
from sdk.package.onnx_model import read_onnx_info
from sdk.package.stream import read_through
from sdk.package.zipwrite import file_facts

_MODEL = bytes(range(256)) * 5000  # 1.25 MB, over the tee's 1 MiB copy threshold


def _members(tmp_path: Path) -> list[tuple[str, bytes | Path]]:
    model = tmp_path / "weights.bin"
    model.write_bytes(_MODEL)
    return [
        ("mimetype", b"application/vnd.etsi.asic-e+zip"),
        ("META/package_metadata.json", b'{"name": "pump"}' * 50),
        ("CONTENT/model.onnx", model),
        ("META-INF/signature001.p7s", b"\x30\x82" + bytes(300)),
    ]


def _read_back(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # every CRC-32 right
        return {i.filename: zf.read(i) for i in zf.infolist()}


def test_a_package_reads_back_with_zipfile_and_its_hash_is_the_file_s(tmp_path: Path) -> None:
    members = _members(tmp_path)
    out = tmp_path / "pkg.uadipkg"
    size, digest = write_package(out, members, stored=["mimetype"])
    assert (size, digest) == (out.stat().st_size, hashlib.sha256(out.read_bytes()).hexdigest())
    content = {n: c if isinstance(c, bytes) else c.read_bytes() for n, c in members}
    assert _read_back(out) == content
    with zipfile.ZipFile(out) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert [i.filename for i in zf.infolist()] == [n for n, _ in members]  # in the order given
    assert infos["mimetype"].compress_type == zipfile.ZIP_STORED and not infos["mimetype"].extra
    assert infos["META/package_metadata.json"].compress_type == zipfile.ZIP_DEFLATED
    assert infos["CONTENT/model.onnx"].compress_type == zipfile.ZIP_STORED
    for info in infos.values():
        assert (info.date_time, info.create_system, info.external_attr >> 16) == ((1980, 1, 1, 0, 0, 0), 3, 0o100644)
    # the local headers are what a transfer follows: the stored entries hashed, the model copied aside
    received = read_through(out, tmp_path / "seen")
    assert received.digest == (size, digest)
    seen = {e.name: e for e in received.entries}
    assert set(seen) == {"mimetype", "CONTENT/model.onnx"}  # the stored ones: the rest is deflated
    assert seen["CONTENT/model.onnx"].sha256 == hashlib.sha256(_MODEL).hexdigest()
    copy = seen["CONTENT/model.onnx"].copy
    assert copy is not None and copy.read_bytes() == _MODEL


def test_facts_given_spare_a_read_and_are_the_file_s(tmp_path: Path) -> None:
    members = _members(tmp_path)
    facts = file_facts(tmp_path / "weights.bin")
    assert facts.size == len(_MODEL) and facts.sha256 == hashlib.sha256(_MODEL).hexdigest()
    with_facts = write_package(tmp_path / "a.zip", members, facts={"CONTENT/model.onnx": facts})
    without = write_package(tmp_path / "b.zip", members)
    assert with_facts == without  # the same bytes either way: builds stay reproducible


def test_sizes_and_offsets_past_the_limit_go_to_the_zip64_fields(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zipwrite, "_LIMIT", 100)  # every size and offset over 100 bytes counts as "large"
    members = _members(tmp_path)
    out = tmp_path / "pkg.zip"
    write_package(out, members)
    raw = out.read_bytes()
    assert b"PK\x06\x06" in raw and b"PK\x06\x07" in raw  # Zip64 end of central directory and its locator
    assert _read_back(out) == {n: c if isinstance(c, bytes) else c.read_bytes() for n, c in members}


def test_a_file_that_changes_after_its_facts_were_taken_is_not_packaged(tmp_path: Path) -> None:
    members = _members(tmp_path)
    facts = file_facts(tmp_path / "weights.bin")
    (tmp_path / "weights.bin").write_bytes(bytes(len(_MODEL)))  # same size, other bytes
    out = tmp_path / "pkg.zip"
    with pytest.raises(ValueError, match="changed while the package was written"):
        write_package(out, members, facts={"CONTENT/model.onnx": facts})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]  # no package, no temporary file


def test_a_name_given_twice_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchiveEntry, match="duplicate name"):
        write_package(tmp_path / "pkg.zip", [("a", b"1"), ("b", b"2"), ("a", b"3")])
    assert list(tmp_path.iterdir()) == []


def _model(tmp_path: Path, *, doc: str = "", graph_doc: str = "", external: bool = False) -> Path:
    weights = np.arange(64, dtype=np.float32).reshape(8, 8)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(weights, "w")],
        doc_string=graph_doc,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="pump-trainer",
        producer_version="2.1 ü",
        doc_string=doc,
    )
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, size_threshold=0, location="w.bin")
    else:
        onnx.save_model(model, str(path))
    return path


@pytest.mark.parametrize(("doc", "graph_doc"), [("the model's own", "the graph's"), ("", "the graph's"), ("", "")])
def test_onnx_facts_are_what_onnx_load_reads(tmp_path: Path, doc: str, graph_doc: str) -> None:
    path = _model(tmp_path, doc=doc, graph_doc=graph_doc)
    proto = onnx.load(str(path))
    info, text = read_onnx_info(path, "model.onnx")
    assert (info.ir_version, info.opsets, info.producer_name, info.producer_version) == (
        proto.ir_version,
        {o.domain: o.version for o in proto.opset_import},
        proto.producer_name,
        proto.producer_version,
    )
    assert text == (proto.doc_string or proto.graph.doc_string)


def test_weights_in_external_files_and_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="external data files"):
        read_onnx_info(_model(tmp_path, external=True), "model.onnx")
    whole = _model(tmp_path).read_bytes()
    cut = tmp_path / "cut.onnx"
    for length in (len(whole) // 2, len(whole) - 1, 0):
        cut.write_bytes(whole[:length])
        with pytest.raises(ValueError, match="not an ONNX model|empty"):
            read_onnx_info(cut, "model.onnx")
