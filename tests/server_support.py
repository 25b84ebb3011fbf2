"""Helpers shared by the tests/server/ files: an app on the tiny backbone, uploads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from bias_store.format import BiasSet, dumps
from server.http.app import create_app
from server.process.settings import Settings

PREDICTS = 'bitfit_requests_total{method="POST",protocol="native",route="/predict/{task}",'  # a native predict series, up to status
TEXTS = ["a gorgeous, witty film", "dull and far too long", "meh", "the plot twists kept me guessing until the end"]


@contextlib.contextmanager
def serving(store: Path, backbone, raise_server_exceptions: bool = True, **settings) -> Iterator[TestClient]:
    """A running app (lifespan included) on ``backbone`` with its store in ``store``."""
    app = create_app(Settings(store=store, **settings), backbone=backbone)
    with TestClient(app, raise_server_exceptions=raise_server_exceptions) as client:
        yield client


def upload(client: TestClient, bias_set: BiasSet, name: str | None = None, headers: dict | None = None):
    data = {"name": name} if name else None
    return client.post("/tasks", files={"file": ("set.safetensors", dumps(bias_set))}, data=data, headers=headers)


def replace(client: TestClient, task: str, bias_set: BiasSet, headers: dict | None = None):
    return client.put(f"/tasks/{task}", files={"file": ("set.safetensors", dumps(bias_set))}, headers=headers)


@contextlib.contextmanager
def live_server(store: Path, backbone, **settings) -> Iterator[str]:
    """A real uvicorn (the `bitfit serve` config) on a free port, in a thread; yields its base URL."""
    import threading

    import uvicorn

    from server.process.serve_cli import uvicorn_config
    from tests.helpers import free_port, wait_until

    config = Settings(store=store, port=free_port(), **settings)
    server = uvicorn.Server(uvicorn_config(create_app(config, backbone=backbone), config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started or not thread.is_alive(), timeout=60), "uvicorn did not start"
        assert server.started, "uvicorn failed to start"
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def put_stored(store, spec, name: str, seed: int):
    """Store a random valid set for ``name`` straight into ``store`` (as another writer would)."""
    from bias_store import ValidatedUpload
    from tests.helpers import random_bias_set

    bias_set = random_bias_set(spec, name, seed=seed)
    return store.put(ValidatedUpload(bias_set, dumps(bias_set)))


@contextlib.contextmanager
def running(store: Path, backbone, **settings) -> Iterator[tuple[httpx.Client, object]]:
    """A real uvicorn in a thread (the store polled every 50 ms): an HTTP client on it and
    its app (for its services)."""
    import threading

    import uvicorn

    from server.process.serve_cli import uvicorn_config
    from tests.helpers import free_port, wait_until

    config = Settings(store=store, port=free_port(), sync_interval_s=0.05, **settings)
    app = create_app(config, backbone=backbone)
    server = uvicorn.Server(uvicorn_config(app, config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: server.started or not thread.is_alive(), timeout=60) and server.started
        with httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=30) as client:
            yield client, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)
