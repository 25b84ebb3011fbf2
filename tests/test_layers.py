"""The layer rule of docs/ARCHITECTURE.md, checked on the source: each package imports
only the packages below it, and inside ``server/`` each room only the rooms it may.

    bench/                        (anything)
    server/      training/        the two edges; neither imports the other, but for one seam:
                                  the server is the producer of training jobs, so it imports
                                  training.jobs (records, config, datacheck, queue, errors) and
                                  nothing else of training
    engine/                       no FastAPI, no HTTP
    bias_store/                   the bottom: imports no other package of ours
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"bias_store", "engine", "server", "training", "bench", "tests"}
ALLOWED = {
    "bias_store": {"bias_store"},
    "engine": {"bias_store", "engine"},
    "server": {"bias_store", "engine", "server", "training"},  # training: training.jobs only (below)
    "training": {"bias_store", "engine", "training"},
}
# Third-party packages that belong to one edge only.
FORBIDDEN_THIRD_PARTY = {
    "bias_store": {"fastapi", "starlette", "uvicorn"},
    "engine": {"fastapi", "starlette", "uvicorn", "prometheus_client"},
    "training": {"fastapi", "starlette", "uvicorn"},
}


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file (relative imports stay inside)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = _imports(path)
        for name in imported & OURS - ALLOWED[package]:
            found.append(f"{path.relative_to(ROOT)} imports {name}")
        for name in imported & FORBIDDEN_THIRD_PARTY.get(package, set()):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
    assert _violations(package) == []


SERVER_SEAM = "training.jobs"  # the job queue's producer side: what POST /jobs needs


def _seam_violations(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "server").rglob("*.py")):
        for name in sorted(_full_imports(path)):
            if name.split(".")[0] == "training" and not (name == SERVER_SEAM or name.startswith(SERVER_SEAM + ".")):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


def test_server_imports_only_the_jobs_seam_of_training():
    assert _seam_violations(ROOT) == []


def test_the_seam_checker_sees_a_crossing(tmp_path):
    (tmp_path / "server" / "http").mkdir(parents=True)
    (tmp_path / "server" / "http" / "bad.py").write_text("from training.jobs.queue import JobQueue\nfrom training.loop import train\n")
    assert _seam_violations(tmp_path) == ["server/http/bad.py imports training.loop", "server/http/bad.py imports training.loop.train"]


def test_the_checker_sees_a_crossing(tmp_path, monkeypatch):
    """The rule must be able to fail: a training file importing server is reported."""
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "bad.py").write_text("from server.http.app import create_app\nimport fastapi\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _violations("training") == ["training/bad.py imports server", "training/bad.py imports fastapi"]


def test_engine_and_its_test_helpers_load_without_fastapi():
    """`pytest tests/engine` needs no HTTP stack: importing every engine module and the
    shared test fixtures leaves FastAPI unloaded."""
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in (ROOT / "engine").rglob("*.py"))
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r} + ['engine', 'tests.conftest', 'tests.helpers']:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'starlette', 'uvicorn'})\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_python_client_needs_only_httpx_and_pydantic():
    """clients/python installs anywhere: no torch, no server, nothing of ours."""
    imported: set[str] = set()
    for path in (ROOT / "clients" / "python" / "bitfit_client").rglob("*.py"):
        imported |= _imports(path)
    outside = {name for name in imported if name not in sys.stdlib_module_names} - {"bitfit_client"}
    assert outside == {"httpx", "pydantic"}


# server/ in rooms (docs/ARCHITECTURE.md): the HTTP edge sits on the serving path and the
# catalog; neither of those knows HTTP exists, and only the edge turns errors into answers.
ROOM_FORBIDDEN = {
    "catalog": {"server.http", "server.serving"},
    "serving": {"server.http"},
    "process": set(),
    "http": set(),
}


def _full_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _room_violations(root: Path) -> list[str]:
    found = []
    for path in sorted((root / "server").rglob("*.py")):
        rel = path.relative_to(root)
        room = rel.parts[1] if len(rel.parts) > 2 else None
        for name in sorted(_full_imports(path)):
            if room != "http" and (name == "server.http.errors" or name.startswith("server.http.errors.")):
                found.append(f"{rel} imports the HTTP error table ({name})")
            for banned in ROOM_FORBIDDEN.get(room, set()):
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{rel} ({room}) imports {name}")
    return found


def test_server_rooms_import_only_what_they_may():
    assert sorted(p.name for p in (ROOT / "server").iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(ROOM_FORBIDDEN)
    assert _room_violations(ROOT) == []


def test_the_room_checker_sees_a_crossing(tmp_path):
    (tmp_path / "server" / "catalog").mkdir(parents=True)
    (tmp_path / "server" / "catalog" / "bad.py").write_text("from server.http.errors import status_of\nimport server.serving.batcher\n")
    found = _room_violations(tmp_path)
    assert "server/catalog/bad.py imports the HTTP error table (server.http.errors)" in found
    assert "server/catalog/bad.py (catalog) imports server.serving.batcher" in found
