"""Helpers shared by the tests/server/ files: an app on the tiny backbone, uploads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from bias_store.format import BiasSet, dumps
from server.app import create_app
from server.settings import Settings

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
