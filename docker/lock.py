"""Write the lock files the images install from: every distribution the server (and, for
the worker, the ``train`` extra) needs, pinned to the version tested in this environment.

    .venv/bin/python docker/lock.py            # rewrite docker/requirements-{server,export,train,cuda}.lock
    .venv/bin/python docker/lock.py --check    # exit 1 if they are not what this would write

torch is not locked here: the Dockerfiles install it first, from the CPU (or CUDA) index,
at the version their TORCH_VERSION names; its own dependencies come with it. The walk
follows ``importlib.metadata`` requirements (markers evaluated for Linux and this Python).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROJECT = "bitfit-serve"
LOCAL = {"bitfit-serve": ROOT / "pyproject.toml", "bitfit-client": ROOT / "clients" / "python" / "pyproject.toml"}
NOT_LOCKED = {"torch"}  # installed from its own index first (see the Dockerfiles)
# Each image stage's lock: the extras it installs. The server's venv has what serving imports
# (ONNX Runtime is the CPU default backend); the exporter (onnx extra) is only in the stage
# that writes the graph; the worker trains on PyTorch; the CUDA image serves on PyTorch.
LOCKS = {"server": ("serve",), "export": ("serve", "onnx"), "train": ("serve", "train"), "cuda": ()}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(name: str, extras: tuple[str, ...]) -> list[str]:
    """Requirement lines of a distribution: this checkout's own projects from their
    pyproject.toml (the installed metadata may be older), the rest from what is installed."""
    if _norm(name) in LOCAL:
        project = tomllib.loads(LOCAL[_norm(name)].read_text())["project"]
        optional = project.get("optional-dependencies", {})
        return [*project["dependencies"], *(line for extra in extras for line in optional.get(extra, []))]
    return metadata.distribution(name).requires or []


def closure(extras: tuple[str, ...]) -> dict[str, str]:
    """Normalized name -> installed version of everything ``bitfit-serve[extras]`` pulls in
    (this checkout's own projects excluded: the images build them from source)."""
    env = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
    found: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(PROJECT, extras)]
    seen: set[str] = set()
    while todo:
        name, wanted = todo.pop()
        for line in _requires(name, wanted):
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in (wanted or ("",))):
                continue
            key = _norm(req.name)
            if key in NOT_LOCKED or key in seen:
                continue
            seen.add(key)
            if key not in LOCAL:
                found[key] = metadata.version(req.name)
            todo.append((req.name, tuple(req.extras)))
    return dict(sorted(found.items()))


def render(kind: str) -> str:
    pins = closure(LOCKS[kind])
    head = (f"# The {kind} image's Python dependencies, exact (written by docker/lock.py from the tested\n"
            f"# environment; torch is installed before these, from its own index).\n")
    return head + "".join(f"{name}=={version}\n" for name, version in pins.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a lock is stale")
    args = parser.parse_args(argv)
    stale = []
    for kind in LOCKS:
        path, text = HERE / f"requirements-{kind}.lock", render(kind)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run docker/lock.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
