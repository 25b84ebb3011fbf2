"""``client.files`` / ``client.jobs`` and ``bitfit jobs submit|list|show|logs|cancel`` against a
real uvicorn with its training worker (the packaged MiniLM, tiny data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bitfit_client import Client, Forbidden, InvalidDataFile, InvalidJobConfig, JobNotCancellable, JobNotFound

from tests.server.test_jobs_live import ADMIN, config, reviews
from tests.server_support import running

pytestmark = [pytest.mark.minilm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url(tmp_path_factory, minilm_backbone):
    with running(tmp_path_factory.mktemp("client-jobs"), minilm_backbone, api_keys=[ADMIN], train_workers=1) as (http, _):
        yield str(http.base_url).rstrip("/")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    (folder / "train.csv").write_bytes(reviews(24))
    (folder / "validation.csv").write_bytes(reviews(8, seed=2))
    (folder / "bad.csv").write_bytes(reviews(24).replace(b"positive", b"", 1))  # row 2: no label
    return folder


def test_files_upload_and_a_job_from_file_ids_waited_with_progress(url, data):
    seen = []
    with Client(url, api_key=ADMIN) as client:
        train = client.files.upload(data / "train.csv")
        assert train.rows == 24 and train.columns == ["text", "label"] and client.files.get(train.id).sha256 == train.sha256
        validation = client.files.upload(data / "validation.csv", config=config("client.mood"))
        job = client.jobs.create(config("client.mood"), files={"train": train.id, "validation": validation.id},
                                 idempotency_key="client-1")
        again = client.jobs.create(config("client.mood"), files={"train": train.id, "validation": validation.id},
                                   idempotency_key="client-1")
        assert again.id == job.id and job.status == "queued"
        done = client.jobs.wait(job.id, seen.append, timeout=240, poll_s=0.5)
        assert done.status == "succeeded" and done.result["published"], done
        assert [e.seq for e in seen] == sorted({e.seq for e in seen}) and seen[-1].data.get("status") == "succeeded"
        assert any(e.type == "progress" for e in seen)
        assert job.id in [j.id for j in client.jobs.list(task="client.mood")]
        assert "report.json" in client.jobs.artifacts(job.id)
        assert json.loads(client.jobs.artifact(job.id, "report.json"))
        with pytest.raises(JobNotCancellable):
            client.jobs.cancel(job.id)
        assert client.predict("client.mood", "the film was superb").version == 1


def test_typed_errors(url, data):
    with Client(url, api_key=ADMIN) as client:
        with pytest.raises(InvalidDataFile) as bad:
            client.jobs.create(config("client.bad"), train=data / "bad.csv")
        assert (bad.value.split, bad.value.row, bad.value.column) == ("train", 2, "label")
        with pytest.raises(InvalidJobConfig):
            client.jobs.create({"task": "x", "epochs": 3}, train=data / "train.csv")
        with pytest.raises(JobNotFound):
            client.jobs.get("job-" + "0" * 24)
        queued = client.jobs.create(config("client.cancel", epochs=50), train=reviews(200))
        assert client.jobs.cancel(queued.id).id == queued.id
        assert client.jobs.wait(queued.id, timeout=30, poll_s=0.2).status == "cancelled"
    with Client(url, api_key="not-the-key-0123456789") as client, pytest.raises(Forbidden):
        client.jobs.page()


def _bitfit(*args: str, url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BITFIT_API_KEY": ADMIN, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])}
    return subprocess.run([sys.executable, "-m", "server.process.cli", "jobs", *args, "--url", url], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)


def test_cli_submit_wait_list_show_logs_cancel(url, data, tmp_path):
    cfg = tmp_path / "job.json"
    cfg.write_text(json.dumps(config("cli.mood")))
    submitted = _bitfit("submit", "--config", str(cfg), "--train", str(data / "train.csv"), "--validation",
                        str(data / "validation.csv"), "--wait", url=url)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.splitlines()[0]
    assert job_id.startswith("job-") and "succeeded" in submitted.stdout
    listed = _bitfit("list", "--task", "cli.mood", url=url)
    assert listed.returncode == 0 and job_id in listed.stdout and "succeeded" in listed.stdout
    shown = _bitfit("show", job_id, url=url)
    assert json.loads(shown.stdout)["result"]["published"]
    logs = _bitfit("logs", job_id, url=url)
    assert logs.returncode == 0 and "succeeded" in logs.stdout and "running" in logs.stdout
    ended = _bitfit("cancel", job_id, url=url)
    assert ended.returncode == 1 and "cannot be cancelled" in ended.stderr
    bad = _bitfit("submit", "--task", "cli.bad", "--train", str(data / "bad.csv"), url=url)
    assert bad.returncode == 1 and "row 2" in bad.stderr and "'label'" in bad.stderr
    assert _bitfit("show", "job-" + "0" * 24, url=url).returncode == 1
    missing = _bitfit("submit", "--train", str(data / "train.csv"), url=url)
    assert missing.returncode == 2 and "--task" in missing.stderr
