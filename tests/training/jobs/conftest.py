"""Fixtures of the job tests: the queue's objects in a folder or under a fresh SeaweedFS prefix."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(params=["folder", "s3"])
def make_objects(request, tmp_path):
    """A factory of object layers that all see one fresh place (so two "workers" can each have one)."""
    if request.param == "folder":
        from bias_store.backends.folder.objects import FolderObjects

        return lambda: FolderObjects(tmp_path / "store")
    from bias_store.backends.s3.objects import S3Objects
    from tests.seaweedfs import BUCKET

    server, prefix = request.getfixturevalue("seaweedfs"), f"j-{uuid.uuid4().hex[:8]}"
    return lambda: S3Objects(server.client(), BUCKET, prefix)


@pytest.fixture()
def queue(make_objects):
    from training.jobs.queue import JobQueue

    return JobQueue(make_objects())
