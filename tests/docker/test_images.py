"""What each image is: the server last (a plain `docker build` builds it), no training-only
packages in it, every Python dependency pinned by a lock, and shutdown given enough time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from server.process.settings import Settings
from tests.docker.test_compose import compose_config
from tests.docker.test_files import DOCKERFILES, ROOT, parse_dockerfile

# pandas is not here: the server checks a training file with it before queueing a job (POST /jobs).
TRAIN_ONLY = {"pyarrow", "matplotlib"}


def _lock(kind: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "docker" / f"requirements-{kind}.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[\w.+!-]+", version), f"not an exact pin: {line!r}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_last_stage_is_the_server(dockerfile):
    stages = list(parse_dockerfile(dockerfile).values())
    assert stages[-1].name == "server" and stages[-1].cmd == ["serve"]


def test_the_server_image_has_no_training_only_packages():
    stages = parse_dockerfile(DOCKERFILES[0])
    assert [c[2] for c in stages["server"].copies if c[1] == "/opt/venv"] == ["build"]
    assert [c[2] for c in stages["worker"].copies if c[1] == "/opt/venv"] == ["build-train"]
    assert not TRAIN_ONLY & set(_lock("server")) and TRAIN_ONLY <= set(_lock("train"))


LOCKS = [("server", ("serve",)), ("export", ("serve", "onnx")), ("train", ("serve", "train")), ("cuda", ())]


@pytest.mark.parametrize("kind, extras", LOCKS)
def test_every_declared_dependency_is_pinned_within_its_range(kind, extras):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(x for e in extras for x in project["optional-dependencies"][e])]
    pins = _lock(kind)
    for line in lines:
        req = Requirement(line)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in ("torch", "bitfit-client"):  # torch from its own index; the client from clients/python
            continue
        assert name in pins, f"{kind} lock lacks {name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"


def test_servers_get_longer_than_the_graceful_timeout_to_stop():
    graceful = Settings().graceful_timeout_s
    services = compose_config("--profile", "gpu")["services"]
    for name in ("server", "server-gpu"):
        grace = services[name].get("stop_grace_period")
        assert grace is not None, f"{name}: no stop_grace_period (Docker's default 10 s cuts in-flight requests)"
        seconds = sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"(\d+)([hms])", grace))
        assert seconds > graceful, f"{name}: stop_grace_period {grace} <= BITFIT_GRACEFUL_TIMEOUT_S {graceful}"


def test_the_server_image_serves_on_onnx_runtime_from_a_graph_made_at_build_time(tmp_path, tiny_bert_dir, tiny_backbone):
    """The server image has ONNX Runtime (the CPU default) and copies the build stage's graph to
    where the server looks; the build step's script fills a cache the engine then reads as is."""
    pytest.importorskip("onnxruntime")
    import subprocess
    import sys

    from engine import Engine
    from engine.runners import OnnxOptions

    assert {"onnxruntime", "onnx", "onnxscript"} <= set(_lock("export"))
    stages = parse_dockerfile(DOCKERFILES[0])
    (cache_copy,) = [c for c in stages["server"].copies if c[2] == "export"]
    # The runtime stage's user `bitfit` has its home at /home/bitfit.
    assert cache_copy[0] == ["/opt/onnx-cache"] and cache_copy[1] == "/home/bitfit/.cache/bitfit/onnx"
    assert Settings(onnx_cache=None).resolved_onnx_cache() == Path.home() / ".cache" / "bitfit" / "onnx"
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, str(ROOT / "docker" / "onnx_cache.py"), str(cache), "--backbone", str(tiny_bert_dir)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    graphs = sorted(cache.glob("*/encoder.onnx"))  # bias rows only, and with LayerNorm gains
    stamps = [g.stat().st_mtime_ns for g in graphs]
    assert len(graphs) == 2
    engine = Engine(tiny_backbone, onnx=OnnxOptions(cache))  # the server's engine: cache hits, nothing rebuilt
    engine.enable_gains()  # what the first bitfit-ln set (the demo task) does
    assert engine.backend == "onnxruntime" and engine.table.has_gains
    assert sorted(cache.glob("*/encoder.onnx")) == graphs and [g.stat().st_mtime_ns for g in graphs] == stamps
