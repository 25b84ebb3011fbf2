"""The store settings reach open_store: `bitfit serve` (Settings), `bitfit train` and `bitfit worker` (flags whose
defaults are the same BITFIT_* variables)."""

from __future__ import annotations

import argparse

import pytest

from server.process import services
from server.process.metrics import Metrics
from server.process.settings import Settings
from training.publish import Target
from training.store_args import add_store_arguments, store_options

OPTIONS = {"s3_connect_timeout_s": 0.5, "s3_read_timeout_s": 1.5, "s3_max_attempts": 1, "cache_bytes": 4096}


def test_serve_passes_the_s3_timeouts_and_the_disk_tier_to_open_store(tmp_path, tiny_backbone, monkeypatch):
    seen = {}

    def fake_open_store(url, keep_versions, endpoint, **kwargs):
        seen.update(kwargs, url=url, endpoint=endpoint)
        raise RuntimeError("stop here")

    monkeypatch.setattr(services, "open_store", fake_open_store)
    monkeypatch.setenv("BITFIT_CACHE_DIR", str(tmp_path / "tier"))
    settings = Settings(store="s3://b/p", s3_endpoint_url="http://127.0.0.1:1", **OPTIONS)
    with pytest.raises(RuntimeError, match="stop here"):
        services.start_services(settings, Metrics(), tiny_backbone)
    assert seen == {**OPTIONS, "cache_dir": tmp_path / "tier", "url": "s3://b/p", "endpoint": "http://127.0.0.1:1"}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_store_arguments(parser)
    return parser.parse_args(argv)


def test_train_and_worker_flags_default_to_the_servers_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("BITFIT_S3_READ_TIMEOUT_S", "1.5")
    monkeypatch.setenv("BITFIT_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("BITFIT_CACHE_DIR", str(tmp_path / "tier"))
    args = _parse(["--s3-connect-timeout-s", "0.5", "--cache-bytes", "4096"])
    assert store_options(args) == {**OPTIONS, "cache_dir": str(tmp_path / "tier")}
    assert _parse([]).s3_connect_timeout_s == 2.0

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = Target(store="s3://b/p", s3_endpoint_url="http://127.0.0.1:1", store_options=store_options(args)).open_store()
    config = store.objects.client.meta.config  # no request is made: opening an S3 store is lazy
    assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (0.5, 1.5, 1)
    assert store.cache is not None and store.cache.max_bytes == 4096 and (tmp_path / "tier").is_dir()
