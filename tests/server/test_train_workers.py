"""The training workers beside the server: started only where training is installed."""

from __future__ import annotations

import logging

from server.process import services
from server.process.settings import Settings


def test_an_install_without_the_train_extra_starts_no_worker_and_says_why(tmp_path, monkeypatch, caplog):
    # A package that no install has: the server image, which lacks matplotlib and pyarrow.
    monkeypatch.setattr(services, "TRAINER_NEEDS", ("bitfit_no_such_package_xyz",))
    settings = Settings(store=str(tmp_path / "store"), train_workers=2)
    with caplog.at_level(logging.WARNING, logger=services.log.name):
        assert services.start_trainers(settings) is None
    assert "no training workers started" in caplog.text and "bitfit_no_such_package_xyz" in caplog.text
    assert "bitfit jobs worker" in caplog.text


def test_zero_workers_starts_none(tmp_path):
    assert services.start_trainers(Settings(store=str(tmp_path / "store"), train_workers=0)) is None


def test_the_server_imports_with_no_training_only_package(tmp_path):
    """The server image has pandas (POST /jobs checks files) but no pyarrow, matplotlib or
    bitfit_client: the app must still import and build."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('pyarrow', 'matplotlib', 'bitfit_client'): sys.modules[m] = None\n"
            "import server.http.app, training.jobs.worker\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
