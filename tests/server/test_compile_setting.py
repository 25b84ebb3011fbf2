"""``--compile`` / ``BITFIT_COMPILE``: read, validated, and handed to the engine with a warm-up."""

import argparse

import pytest
from pydantic import ValidationError

from engine.runners.compiled import CompiledEncoder
from server.process import serve_cli
from server.process.metrics import Metrics
from server.process.services import start_services, stop_services
from server.process.settings import Settings


def test_the_flag_and_variable_read_the_three_modes(monkeypatch):
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    assert parser.parse_args(["--compile", "max-autotune"]).compile == "max-autotune"
    with pytest.raises(SystemExit):
        parser.parse_args(["--compile", "fast"])
    assert Settings().compile == "off"
    monkeypatch.setenv("BITFIT_COMPILE", "default")
    assert Settings().compile == "default"
    monkeypatch.setenv("BITFIT_COMPILE", "yes")
    with pytest.raises(ValidationError):
        Settings()


def test_start_up_compiles_and_warms_up_the_forward(tmp_path, tiny_backbone, monkeypatch):
    warmed = []
    # Compiling every length bucket of even a tiny model takes minutes on 2 cores; the
    # compiled forward itself is tested in tests/engine/test_compiled.py.
    monkeypatch.setattr(CompiledEncoder, "warm_up", lambda self, max_batch, max_length: warmed.append((self.mode, max_batch)))
    settings = Settings(store=tmp_path / "s", compile="max-autotune", max_batch_rows=24)
    services = start_services(settings, Metrics(), tiny_backbone)
    try:
        assert services.engine.runner.mode == "max-autotune"
        assert warmed == [("max-autotune", 24)]
    finally:
        stop_services(services)
