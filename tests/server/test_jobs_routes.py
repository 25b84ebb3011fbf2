"""The jobs and files routes without a worker: create (multipart, JSON, idempotent), data checked
before queueing, list with a cursor and filters, cancel, events (list and a stream that ends),
artifacts, tenancy, and every kind of bad input answered 4xx JSON, never 500."""

from __future__ import annotations

import json

import pytest

from server.http.tenancy import hash_key
from tests.server_support import serving

ADMIN = "admin-key-0123456789abcdef"
ACME, OTHER = "acme-admin-0123456789abcdef", "zeta-admin-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def csv_bytes(n: int = 16, bad_row: int | None = None) -> bytes:
    lines = ["text,label"]
    for i in range(n):
        text = "" if bad_row is not None and i + 1 == bad_row else f"review number {i} was {'great' if i % 2 else 'awful'}"
        lines.append(f'"{text}",{"positive" if i % 2 else "negative"}')
    return ("\n".join(lines) + "\n").encode()


def create(client, config: dict, headers: dict | None = None, **files):
    parts = {split: (f"{split}.csv", data) for split, data in (files or {"train": csv_bytes()}).items()}
    return client.post("/jobs", data={"config": json.dumps(config)}, files=parts, headers={**AUTH, **(headers or {})})


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_backbone):
    keys = tmp_path_factory.mktemp("keys") / "keys.yaml"
    keys.write_text(json.dumps({"keys": [
        {"name": "acme", "sha256": hash_key(ACME), "scopes": ["admin"], "tasks": ["acme.*"]},
        {"name": "zeta", "sha256": hash_key(OTHER), "scopes": ["admin"], "tasks": ["zeta.*"]},
    ]}))
    with serving(tmp_path_factory.mktemp("store"), tiny_backbone, api_keys=[ADMIN], keys_file=keys,
                 metrics_api_keys=["metrics-key-0123456789"], max_train_file_bytes=50_000) as client:
        yield client


def test_create_get_list_cancel_and_events(app):
    answer = create(app, {"task": "mood", "hyperparameters": {"epochs": 1}})
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert job["object"] == "job" and job["status"] == "queued" and job["task"] == "mood"
    assert set(job["files"]) == {"train"}
    file = app.get(f"/files/{job['files']['train']}", headers=AUTH).json()
    assert file["rows"] == 16 and file["columns"] == ["text", "label"] and file["filename"] == "train.csv"
    assert app.get(f"/jobs/{job['id']}", headers=AUTH).json()["id"] == job["id"]
    events = app.get(f"/jobs/{job['id']}/events", headers=AUTH).json()
    assert [e["data"].get("status") for e in events["data"]] == ["queued"]

    cancelled = app.post(f"/jobs/{job['id']}/cancel", headers=AUTH).json()
    assert cancelled["status"] == "cancelled"
    again = app.post(f"/jobs/{job['id']}/cancel", headers=AUTH)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_cancellable"
    # The stream of an ended job sends its events and ends (after the terminal status).
    with app.stream("GET", f"/jobs/{job['id']}/events", headers={**AUTH, "Accept": "text/event-stream"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    assert "event: status" in text and '"status":"cancelled"' in text and "id: 2" in text
    with app.stream("GET", f"/jobs/{job['id']}/events?stream=true", headers={**AUTH, "Last-Event-ID": "1"}) as stream:
        text = "".join(stream.iter_text())
    assert "id: 1\n" not in text and "id: 2\n" in text
    assert app.app.state.event_streams.open == 0


def test_json_create_from_uploaded_files_and_idempotency(app):
    up = app.post("/files", files={"file": ("reviews.csv", csv_bytes(20))}, headers=AUTH)
    assert up.status_code == 201, up.text
    file_id = up.json()["id"]
    body = {"config": {"task": "mood2"}, "files": {"train": file_id}}
    first = app.post("/jobs", json=body, headers={**AUTH, "Idempotency-Key": "k-1"})
    second = app.post("/jobs", json=body, headers={**AUTH, "Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201 and first.json()["id"] == second.json()["id"]
    conflict = app.post("/jobs", json={**body, "config": {"task": "mood3"}}, headers={**AUTH, "Idempotency-Key": "k-1"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    # The same file checked against another job's columns: refused, naming the column.
    wrong = app.post("/jobs", json={"config": {"task": "mood4", "text_column": "sentence"}, "files": {"train": file_id}},
                     headers=AUTH)
    assert wrong.status_code == 422 and wrong.json()["error"]["column"] == "sentence"
    missing = app.post("/jobs", json={"config": {"task": "m"}, "files": {"train": "file-" + "0" * 24}}, headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "file_not_found"


def test_a_bad_file_is_a_422_naming_split_row_and_column_and_no_job_exists(app):
    before = app.get("/jobs?limit=100", headers=AUTH).json()["data"]
    bad = create(app, {"task": "badjob"}, train=csv_bytes(), validation=csv_bytes(6, bad_row=3))
    assert bad.status_code == 422, bad.text
    error = bad.json()["error"]
    assert (error["code"], error["split"], error["row"], error["column"]) == ("invalid_data_file", "validation", 3, "text")
    after = app.get("/jobs?limit=100", headers=AUTH).json()["data"]
    assert len(after) == len(before) and not app.get("/jobs?task=badjob", headers=AUTH).json()["data"]


def test_listing_pages_with_a_cursor_and_filters(app):
    ids = [create(app, {"task": "pager"}).json()["id"] for _ in range(3)]
    first = app.get("/jobs?limit=2&task=pager", headers=AUTH).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = app.get(f"/jobs?limit=2&task=pager&after={first['next_cursor']}", headers=AUTH).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and not rest["has_more"] and rest["next_cursor"] is None
    app.post(f"/jobs/{ids[1]}/cancel", headers=AUTH)
    cancelled = app.get("/jobs?status=cancelled&task=pager", headers=AUTH).json()["data"]
    assert [j["id"] for j in cancelled] == [ids[1]]


def test_a_scoped_key_sees_only_its_tasks_jobs(app):
    acme, zeta = {"Authorization": f"Bearer {ACME}"}, {"Authorization": f"Bearer {OTHER}"}
    mine = app.post("/jobs", data={"config": json.dumps({"task": "acme.mood"})}, files={"train": ("t.csv", csv_bytes())}, headers=acme)
    assert mine.status_code == 201, mine.text
    job_id = mine.json()["id"]
    outside = app.post("/jobs", data={"config": json.dumps({"task": "zeta.mood"})}, files={"train": ("t.csv", csv_bytes())},
                       headers=acme)
    assert outside.status_code == 403
    unknown = app.get("/jobs/job-" + "0" * 24, headers=zeta)
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/events", f"/jobs/{job_id}/artifacts"):
        hidden = app.get(path, headers=zeta)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == unknown.json()["error"]["code"] == "job_not_found"
    assert app.post(f"/jobs/{job_id}/cancel", headers=zeta).status_code == 404
    assert {j["task"] for j in app.get("/jobs?limit=100", headers=acme).json()["data"]} == {"acme.mood"}
    assert app.get("/jobs?limit=100", headers=zeta).json()["data"] == []
    assert app.get("/jobs", headers={"Authorization": "Bearer reader-nope-0123456789"}).status_code == 403
    assert app.get("/jobs").status_code == 401


def test_artifacts_of_a_job_without_any(app):
    job_id = create(app, {"task": "arts"}).json()["id"]
    assert app.get(f"/jobs/{job_id}/artifacts", headers=AUTH).json() == {"object": "list", "data": []}
    for name in ("report.json", ".hidden", "a%2Fb", "%2E%2E"):
        missing = app.get(f"/jobs/{job_id}/artifacts/{name}", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] in ("artifact_not_found", "not_found"), name


BAD = [
    # (what, request kwargs, status, code)
    ("form encoding", {"content": b"config=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, None),
    ("plain text", {"content": b"hi", "headers": {"Content-Type": "text/plain"}}, 415, None),
    ("no content type", {"content": b"{}"}, 415, None),
    ("bad JSON body", {"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 422, "validation_error"),
    ("JSON unknown field", {"json": {"config": {"task": "x"}, "files": {"train": "file-" + "0" * 24}, "extra": 1}}, 422,
     "validation_error"),
    ("JSON unknown split", {"json": {"config": {"task": "x"}, "files": {"dev": "file-" + "0" * 24}}}, 422, "validation_error"),
    ("JSON bad file id", {"json": {"config": {"task": "x"}, "files": {"train": "../../etc"}}}, 404, "file_not_found"),
    ("config not JSON", {"data": {"config": "{task"}, "files": {"train": ("t.csv", csv_bytes())}}, 422, "validation_error"),
    ("config a list", {"data": {"config": "[1]"}, "files": {"train": ("t.csv", csv_bytes())}}, 422, "validation_error"),
    ("config unknown field", {"data": {"config": '{"task": "x", "lr": 1}'}, "files": {"train": ("t.csv", csv_bytes())}}, 422,
     "invalid_job_config"),
    ("bad task name", {"data": {"config": '{"task": "../x"}'}, "files": {"train": ("t.csv", csv_bytes())}}, 422,
     "invalid_job_config"),
    ("no config", {"files": {"train": ("t.csv", csv_bytes())}}, 422, "validation_error"),
    ("no train file", {"data": {"config": '{"task": "x"}'}, "files": {"test": ("t.csv", csv_bytes())}}, 422, "validation_error"),
    ("unknown part", {"data": {"config": '{"task": "x"}'}, "files": {"train": ("t.csv", csv_bytes()), "dev": ("d.csv", b"x")}},
     422, "validation_error"),
    ("train as a field", {"data": {"config": '{"task": "x"}', "train": "text,label"}, "files": {"test": ("t.csv", csv_bytes())}},
     422, "validation_error"),
    ("huge file", {"data": {"config": '{"task": "x"}'}, "files": {"train": ("t.csv", b"text,label\n" + b"a,b\n" * 20_000)}}, 413,
     "limit_exceeded"),
    ("non-UTF-8 file", {"data": {"config": '{"task": "x"}'}, "files": {"train": ("t.csv", b"text,label\n\xff\xfe\xfa,pos\n" * 10)}},
     422, "invalid_data_file"),
    ("binary garbage", {"data": {"config": '{"task": "x"}'}, "files": {"train": ("t.parquet", b"\x00PAR1 nope")}}, 422,
     "invalid_data_file"),
    ("wrong extension", {"data": {"config": '{"task": "x"}'}, "files": {"train": ("t.exe", csv_bytes())}}, 422, "invalid_data_file"),
    ("empty file", {"data": {"config": '{"task": "x"}'}, "files": {"train": ("t.csv", b"")}}, 422, "invalid_data_file"),
]


@pytest.mark.parametrize("what,kwargs,status,code", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_json_and_queues_nothing(app, what, kwargs, status, code):
    before = len(app.get("/jobs?limit=100", headers=AUTH).json()["data"])
    headers = {**AUTH, **kwargs.pop("headers", {})}
    answer = app.post("/jobs", headers=headers, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    if code:
        assert answer.json()["error"]["code"] == code
    assert len(app.get("/jobs?limit=100", headers=AUTH).json()["data"]) == before


@pytest.mark.parametrize("path", ["/jobs/nope", "/jobs/job-" + "f" * 24, "/jobs/job-" + "f" * 24 + "/events",
                                  "/jobs/job-" + "f" * 24 + "/artifacts", "/files/nope", "/files/file-" + "0" * 24])
def test_unknown_ids_are_404(app, path):
    answer = app.get(path, headers=AUTH)
    assert answer.status_code == 404 and answer.json()["error"]["code"] in ("job_not_found", "file_not_found")


@pytest.mark.parametrize("query", ["after=zzz", "after=" + "a" * 300, "status=done", "limit=0", "limit=101", "after=am9iLTEyMw"])
def test_bad_listing_queries_are_422(app, query):
    answer = app.get(f"/jobs?{query}", headers=AUTH)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error", answer.text


def test_bad_last_event_id_and_files_input(app):
    job_id = create(app, {"task": "lei"}).json()["id"]
    bad = app.get(f"/jobs/{job_id}/events", headers={**AUTH, "Accept": "text/event-stream", "Last-Event-ID": "x"})
    assert bad.status_code == 422
    assert app.post("/files", content=b"{}", headers={**AUTH, "Content-Type": "application/json"}).status_code == 415
    assert app.post("/files", files={"file": ("a.csv", b"text,label\n")}, headers=AUTH).status_code == 422
    nocols = app.post("/files", files={"file": ("a.csv", csv_bytes())}, data={"config": '{"task": "x", "label_column": "y"}'},
                      headers=AUTH)
    assert nocols.status_code == 422 and nocols.json()["error"]["column"] == "y"
