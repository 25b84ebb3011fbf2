"""`bitfit` and `bitfit serve` on the command line: fast help, a flag per setting, --config, typos, the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.process import cli, serve_cli
from server.process.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
# torch (and anything heavy) blocked: importing it fails, so the command must not.
NO_TORCH = "import sys; sys.modules['torch'] = None; from server.process.cli import main; sys.exit(main({argv!r}))"


def _fastest_run(argv: list[str], tries: int = 3) -> tuple[float, subprocess.CompletedProcess]:
    best, result = float("inf"), None
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(tries):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", NO_TORCH.format(argv=argv)], capture_output=True, text=True, env=env)
        best = min(best, time.perf_counter() - started)
    return best, result


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_answer_in_half_a_second_without_torch(argv):
    seconds, result = _fastest_run(argv)
    assert result.returncode == 0, result.stderr
    assert "bitfit" in result.stdout
    assert seconds < 0.5, f"bitfit {argv[0]} took {seconds:.2f} s"


def test_serve_help_imports_no_torch():
    _, result = _fastest_run(["serve", "--help"], tries=1)
    assert result.returncode == 0, result.stderr
    assert "--max-batch-rows" in result.stdout


def _serve_parser():
    top, _ = cli.build_parser(["serve"])
    subs = next(a for a in top._actions if a.__class__.__name__ == "_SubParsersAction")
    return top, subs.choices["serve"]


def test_every_setting_is_a_flag_with_its_variable_and_default_in_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "2000")  # no line wrapping inside a help text
    _, serve = _serve_parser()
    text = " ".join(serve.format_help().split())
    for name, info in Settings.model_fields.items():
        if name in serve_cli.VARIABLE_ONLY:
            assert env_name(name) in text, f"{env_name(name)}: a variable-only setting the help does not name"
            continue
        option = serve_cli.flag(name)
        assert option in serve._option_string_actions, f"Settings.{name} has no flag {option}"
        if name in serve_cli.COMMAND_FLAGS:
            continue
        help_text = " ".join(serve._option_string_actions[option].help.split())
        assert f"({env_name(name)}, default: {serve_cli._shown(info.default)})" in help_text, (name, help_text)
        assert help_text in text


def _parse(argv: list[str]):
    top, _ = _serve_parser()
    return top.parse_args(["serve", *argv])


def test_flags_then_variables_then_the_config_file(tmp_path):
    config = tmp_path / "bitfit.yaml"
    config.write_text("max-batch-rows: 9\nmax_wait_ms: 1.5\naccess_log: true\nport: 9001\n")
    args = _parse(["--config", str(config), "--port", "9002", "--split-overhead-tokens", "16", "--preload", "a", "b",
                   "--no-access-log"])
    settings = serve_cli.settings_from(args, {"BITFIT_MAX_WAIT_MS": "5"})
    assert settings.max_batch_rows == 9  # from the file
    assert settings.port == 9002 and settings.access_log is False  # flags win over the file
    assert settings.split_overhead_tokens == 16 and [p.name for p in settings.preload] == ["a", "b"]
    # A variable wins over the file (pydantic-settings reads it: the file's value is dropped).
    assert serve_cli.read_config(config, {"BITFIT_MAX_WAIT_MS": "5"}).get("max_wait_ms") is None
    config.write_text("max_batch_row: 3\n")
    with pytest.raises(ValueError, match="did you mean 'max_batch_rows'"):
        serve_cli.settings_from(_parse(["--config", str(config)]), {})


def test_a_misspelt_flag_names_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--prot", "8001"])
    assert exit_info.value.code == 2
    assert "did you mean --port?" in capsys.readouterr().err


def test_a_taken_port_is_refused_before_the_backbone_loads(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.perf_counter()
        assert cli.main(["serve", "--port", str(port), "--backbone", "/no/such/folder"]) == 2
    err = capsys.readouterr().err
    assert f"--port / BITFIT_PORT: 127.0.0.1:{port} is not free" in err
    assert time.perf_counter() - started < 2


def test_the_serving_process_hands_the_gil_back_quickly_and_collects_less_often(tmp_path):
    """bitfit serve's process settings (docs/benchmarks/request_path.md): the inference worker
    waits at most 0.5 ms for a busy event loop's GIL, and the cyclic GC runs less often."""
    import gc

    import torch

    before = sys.getswitchinterval(), gc.get_threshold(), torch.get_num_threads()
    try:
        serve_cli._tune_process(Settings(store=str(tmp_path), torch_threads=1), torch)
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert gc.get_threshold() == serve_cli.GC_THRESHOLDS and serve_cli.GC_THRESHOLDS[0] > 700
        assert torch.get_num_threads() == 1
    finally:
        sys.setswitchinterval(before[0])
        gc.set_threshold(*before[1])
        torch.set_num_threads(before[2])


def test_onnx_runtime_gets_every_core_and_torch_all_but_one():
    settings = Settings(store="s")
    assert settings.resolved_onnx_threads(2) == 2 and settings.resolved_torch_threads(2) == 1
    assert Settings(store="s", torch_threads=3).resolved_onnx_threads(2) == 3


def test_parallel_forwards_are_asked_for_and_only_onnx_runtime_gets_them():
    assert Settings(store="s").resolved_inference_workers(parallel=True) == 1
    asked = Settings(store="s", inference_workers=3)
    assert asked.resolved_inference_workers(parallel=True) == 3
    assert asked.resolved_inference_workers(parallel=False) == 1  # PyTorch's forward patches shared modules
    for bad in (0, -1, 65):
        with pytest.raises(ValueError):
            Settings(store="s", inference_workers=bad)
