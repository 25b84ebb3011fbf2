"""docker/verify.sh and when CI runs it: the recorded hash covers exactly what the images are
built from, and .ci/run keeps the test suite and lint first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.docker.test_files import ROOT

VERIFY = ROOT / "docker" / "verify.sh"


def _inputs_hash(repo: Path) -> str:
    done = subprocess.run(["bash", str(repo / "docker" / "verify.sh"), "--inputs-hash"], capture_output=True, text=True,
                          timeout=60, cwd=repo)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True)


def test_the_inputs_hash_changes_with_what_the_images_are_built_from_and_nothing_else(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docker").mkdir(parents=True)
    for name in ("docker/verify.sh", "docker/Dockerfile", "docker/requirements-server.lock", "docker-compose.yml",
                 "pyproject.toml", ".dockerignore", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    first = _inputs_hash(repo)
    assert len(first) == 64 and _inputs_hash(repo) == first
    (repo / "README.md").write_text("not an input\n")
    (repo / "docker" / "verified.sha256").write_text(first + "\n")  # the record itself is no input
    _git(repo, "add", "-A")
    assert _inputs_hash(repo) == first
    for name in ("pyproject.toml", "docker/requirements-server.lock", "docker-compose.yml", "docker/Dockerfile", ".dockerignore"):
        before = (repo / name).read_text()
        (repo / name).write_text(before + "\n# changed\n")
        assert _inputs_hash(repo) != first, f"{name} is not an input of the hash"
        (repo / name).write_text(before)
    assert _inputs_hash(repo) == first


def test_ci_runs_tests_and_lint_first_then_verify_when_the_inputs_changed() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines.index("make test") < lines.index("make lint") < min(i for i, line in enumerate(lines) if "docker/verify.sh" in line)
    text = (ROOT / ".ci" / "run").read_text()
    assert "docker/verified.sha256" in text and "BITFIT_DOCKER_CHECK" in text and "--inputs-hash" in text


def test_verify_is_valid_bash_and_records_only_after_a_pass() -> None:
    assert subprocess.run(["bash", "-n", str(VERIFY)], capture_output=True).returncode == 0
    text = VERIFY.read_text()
    assert text.index('inputs_hash > "$ROOT/$RECORD_FILE"') > text.index('log "compose down -v"')
    # The Dockerfile's names it relies on.
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=" in dockerfile and "ARG TORCH_VERSION=" in dockerfile
