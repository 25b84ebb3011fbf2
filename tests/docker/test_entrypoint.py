"""The CPU image's exact start command and environment, run outside Docker.

The command is the `server` stage's ENTRYPOINT + CMD and the environment is its ENV, both
parsed from docker/Dockerfile. Only what differs between a container and this machine is
translated: paths the image COPYs map back to their sources in the repository, the image's
virtualenv maps to this interpreter's, and the store, host and port become a temporary
folder and a free loopback port. The server must pass the image's HEALTHCHECK and serve
the demo task `sentiment` from the packaged MiniLM, which the image bakes in.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.docker.test_files import ROOT, copied_files, parse_dockerfile
from tests.helpers import free_port, wait_until

pytestmark = [pytest.mark.minilm, pytest.mark.slow]

START_TIMEOUT_S = 180  # the 2 CPU cores are shared; loading MiniLM usually takes ~10 s


def host_path(value: str, image_paths: dict[str, str]) -> str:
    """A container path in ``value`` (a path, or a ':'/','-separated list) mapped to this machine."""
    def one(path: str) -> str:
        for container, host in sorted(image_paths.items(), key=lambda kv: -len(kv[0])):
            if path == container or path.startswith(container.rstrip("/") + "/"):
                return host + path[len(container.rstrip("/")):]
        return path

    for sep in (":", ","):
        if sep in value and value.split(sep)[0].startswith("/"):
            return sep.join(one(part) for part in value.split(sep))
    return one(value)


def image_command_and_env(tmp_path: Path, port: int) -> tuple[list[str], dict[str, str], list[str]]:
    """(argv, env, healthcheck argv) of the CPU image's `server` stage, translated to this machine."""
    stage = parse_dockerfile(ROOT / "docker" / "Dockerfile")["server"]
    venv = stage.env["VIRTUAL_ENV"]
    image_paths = {dest: str(src) for dest, src in copied_files(stage).items()}
    image_paths[venv] = sys.prefix  # the image's virtualenv is this test's
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITFIT_")}
    for key, value in stage.env.items():
        if key == "PATH":  # `/opt/venv/bin:$PATH`: the virtualenv first, then this machine's PATH
            value = value.replace("$PATH", os.environ.get("PATH", "")).replace("${PATH}", os.environ.get("PATH", ""))
        env[key] = host_path(value, image_paths)
    # What a container gets from Docker rather than from the image: its own network
    # namespace (here a free loopback port) and the store volume (here a fresh folder).
    assert stage.env["BITFIT_STORE"] not in image_paths
    env.update(BITFIT_HOST="127.0.0.1", BITFIT_PORT=str(port), BITFIT_STORE=str(store))
    for key, value in env.items():
        if key.startswith("BITFIT_") and value.startswith("/"):
            for part in value.split(","):
                assert Path(part).exists() or key == "BITFIT_STORE", f"{key}={value}: a container-only path"

    def executable(argv: list[str]) -> list[str]:
        # Resolved like the container does: on the image's PATH, its virtualenv first.
        found = subprocess.run(["which", argv[0]], env=env, capture_output=True, text=True).stdout.strip()
        assert found, f"{argv[0]!r} is not on the image's PATH"
        return [found] + [host_path(a, image_paths) for a in argv[1:]]

    argv = executable(stage.entrypoint + (stage.cmd or []))
    assert Path(argv[0]).parent == Path(sys.prefix) / "bin", argv  # the project's console script
    return argv, env, executable(stage.healthcheck)


def test_the_image_start_command_serves_the_demo_task(tmp_path: Path) -> None:
    port = free_port()
    argv, env, healthcheck = image_command_and_env(tmp_path, port)

    def healthy() -> bool:
        return subprocess.run(healthcheck, env=env, capture_output=True, timeout=30).returncode == 0

    assert not healthy(), "the healthcheck passes with no server listening"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            try:
                return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(ready, START_TIMEOUT_S, interval=0.5), f"not ready:\n{log.read_text()[-4000:]}"
        assert healthy(), "the image's HEALTHCHECK fails on a ready server"
        with httpx.Client(base_url=base, timeout=30) as client:
            tasks = {t["name"]: t for t in client.get("/tasks").raise_for_status().json()["tasks"]}
            assert tasks["sentiment"]["loaded"]
            assert client.get("/tasks/sentiment").raise_for_status().json()["labels"] == ["negative", "positive"]
            texts = ["a warm, funny and beautifully acted film", "a dull, lifeless and tedious mess"]
            body = client.post("/predict/sentiment", json={"inputs": texts}).raise_for_status().json()
            assert [p["label"] for p in body["predictions"]] == ["positive", "negative"], body
            assert "bitfit" in client.get("/metrics").raise_for_status().text
        # The preloaded task went into the store (the volume), where the worker publishes too.
        assert (tmp_path / "store").is_dir() and any((tmp_path / "store").rglob("*.safetensors"))
    finally:
        proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn drains, runs the lifespan's shutdown, then re-raises the signal it caught,
    # so a clean `docker stop` ends with 143 (-SIGTERM here) or 0.
    assert code in (0, -signal.SIGTERM), f"exit code {code} on SIGTERM:\n{log.read_text()[-4000:]}"
    assert "Application shutdown complete" in log.read_text(), log.read_text()[-4000:]
