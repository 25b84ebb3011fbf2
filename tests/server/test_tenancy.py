"""Tenants: scoped keys (BITFIT_KEYS_FILE) see, predict and list only their own tasks, on every route."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from bias_store.backends.folder.tasks import TaskFolders
from bias_store.errors import InvalidTaskName
from bias_store.format import dumps
from bias_store.validate import check_task_name
from server.http.tenancy import KeysFile, hash_key, parse_entries, scope_of_patterns
from server.process import cli
from tests.helpers import random_bias_set, wait_until
from tests.server_support import live_server, serving, upload

OPERATOR = "operator-admin-key-0123456789"
METRICS = "metrics-scraper-key-0123456789"
ACME, BETA = "a" * 64, "b" * 64  # what `bitfit keys add` prints: 64 hex digits


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def write_keys(path, *entries) -> None:
    path.write_text(json.dumps({"keys": [
        {"name": name, "sha256": hash_key(key), "scopes": scopes, "tasks": tasks} for name, key, scopes, tasks in entries
    ]}))


@pytest.mark.parametrize("name", ["acme.sentiment", "acme-corp.x_1", "a.b", "plain"])
def test_a_namespace_is_one_dot_and_stays_one_folder(name):
    assert check_task_name(name) == name


@pytest.mark.parametrize("name", ["acme/x", "acme..x", ".acme", "acme.", "a.b.c", "..", ".", "acme./x", "Acme.x", "acme._x"])
def test_names_that_could_escape_a_folder_are_refused(name):
    with pytest.raises(InvalidTaskName):
        check_task_name(name)


def test_scope_patterns():
    scope = scope_of_patterns(["acme.*", "shared"])
    assert scope.allows("acme.x") and scope.allows("shared") and not scope.allows("acmex") and not scope.allows("shared2")
    assert scope.prefixes == ("acme.",) and scope_of_patterns(["*", "acme.*"]).prefixes is None
    with pytest.raises(ValueError, match="keys\\[0\\]"):
        parse_entries({"keys": [{"name": "x", "sha256": "nothex", "scopes": ["predict"], "tasks": ["*"]}]})
    with pytest.raises(ValueError, match="scopes"):
        parse_entries({"keys": [{"name": "x", "sha256": hash_key(ACME), "scopes": ["root"], "tasks": ["*"]}]})


def test_a_namespaced_task_is_one_folder_of_the_store(tmp_path, tiny_backbone):
    with serving(tmp_path / "s", tiny_backbone) as c:
        assert upload(c, random_bias_set(tiny_backbone.spec, "acme.sentiment", seed=1)).status_code == 201
        assert c.post("/predict/acme.sentiment", json={"inputs": "x"}).status_code == 200
    folders = TaskFolders(tmp_path / "s" / "tasks")
    assert folders.dir("acme.sentiment").is_dir() and folders.names() == ["acme.sentiment"]


def test_keys_file_is_reread_on_change_and_a_broken_one_keeps_the_last_keys(tmp_path):
    path = tmp_path / "keys.json"
    write_keys(path, ("acme", ACME, ["predict"], ["acme.*"]))
    keys = KeysFile(path, check_every_s=0)
    assert keys.match(ACME, frozenset({"predict"})).scope.allows("acme.x")
    assert keys.match(ACME, frozenset({"admin"})) is None and keys.match(BETA, frozenset({"predict"})) is None
    write_keys(path, ("beta", BETA, ["admin"], ["beta.*"]))
    assert keys.match(ACME, frozenset({"predict"})) is None and keys.match(BETA, frozenset({"admin"})).name == "beta"
    path.write_text("{not json")
    assert keys.match(BETA, frozenset({"admin"})).name == "beta"


def test_keys_cli_prints_a_key_once_and_stores_its_hash(tmp_path, capsys):
    path = tmp_path / "keys.yaml"
    assert cli.main(["keys", "--file", str(path), "add", "acme", "--scope", "predict", "--tasks", "acme.*"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(key) == 64 and key not in path.read_text() and hash_key(key) in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    assert KeysFile(path).match(key, frozenset({"predict"})).scope.allows("acme.x")
    assert cli.main(["keys", "--file", str(path), "list"]) == 0 and "acme\tpredict\tacme.*" in capsys.readouterr().out
    assert cli.main(["keys", "--file", str(path), "revoke", "acme"]) == 0
    assert KeysFile(path).entries == []
    assert cli.main(["keys", "--file", str(path), "revoke", "acme"]) == 1


def _same_as_unknown(http: httpx.Client, method: str, other: str, unknown: str, **kw) -> httpx.Response:
    """Another tenant's task answers byte for byte as an unknown task of one's own (names swapped)."""
    theirs = http.request(method, kw.pop("url").format(other), **kw)
    mine = http.request(method, theirs.request.url.path.replace(other, unknown), **kw)
    assert theirs.status_code == mine.status_code, (theirs.text, mine.text)
    assert theirs.text.replace(other, unknown) == mine.text
    return theirs


def _tenant_sees_only_its_own(http: httpx.Client, own: str, other: str) -> None:
    unknown = own.split(".")[0] + ".nope"
    listed = http.get("/tasks").json()
    assert [t["name"] for t in listed["tasks"]] == [own] and listed["unhealthy"] == []
    assert [m["name"] for m in http.post("/v2/repository/index", json={}).json()] == [own]
    assert http.post(f"/predict/{own}", json={"inputs": "x"}).status_code == 200
    assert http.post(f"/predict/{own}?format=hf", json={"inputs": "x"}).status_code == 200
    oip = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    assert http.post(f"/v2/models/{own}/infer", json=oip).status_code == 200
    body = {"inputs": "x"}
    r = _same_as_unknown(http, "POST", other, unknown, url="/predict/{}", json=body)
    assert r.status_code == 404 and r.json()["error"]["known_tasks"] == [own]
    _same_as_unknown(http, "POST", other, unknown, url="/predict/{}?format=hf", json=body)
    _same_as_unknown(http, "POST", other, unknown, url="/predict/{}?version=1", json=body)
    _same_as_unknown(http, "POST", other, unknown, url="/predict", json={"items": [{"task": "{}", "inputs": "x"}]})
    for method, url in (("GET", "/tasks/{}"), ("DELETE", "/tasks/{}"), ("POST", "/tasks/{}/rollback"),
                        ("GET", "/v2/models/{}"), ("GET", "/v2/models/{}/ready"), ("GET", "/v2/models/{}/versions/1"),
                        ("GET", "/v2/models/{}/versions/1/ready")):
        assert _same_as_unknown(http, method, other, unknown, url=url).status_code in (403, 404)
    r = _same_as_unknown(http, "POST", other, unknown, url="/v2/models/{}/infer", json=oip)
    assert r.status_code == 404 and r.json()["known_tasks"] == [own]
    assert http.get("/metrics").status_code == 403
    multi = http.post("/predict", content=json.dumps({"items": [{"task": other, "inputs": "x"}]}))
    assert multi.status_code == 404 and other.split(".")[0] not in multi.text.replace(other, "")


def test_two_tenants_on_real_uvicorn_see_only_their_own_tasks(tmp_path, tiny_backbone):
    keys = tmp_path / "keys.json"
    write_keys(keys, ("acme", ACME, ["predict", "admin"], ["acme.*"]), ("beta", BETA, ["predict"], ["beta.*"]))
    settings = dict(api_keys=[OPERATOR], metrics_api_keys=[METRICS], keys_file=keys)
    with live_server(tmp_path / "s", tiny_backbone, **settings) as url:
        with httpx.Client(base_url=url, headers=bearer(OPERATOR), timeout=30) as op:
            for name, seed in (("acme.one", 1), ("beta.secret", 2)):
                r = op.post("/tasks", files={"file": ("f", dumps(random_bias_set(tiny_backbone.spec, name, seed=seed)))})
                assert r.status_code == 201
            assert op.post("/predict/beta.secret", json={"inputs": "warm-up"}).status_code == 200  # counted in /metrics
        with httpx.Client(base_url=url, headers=bearer(ACME), timeout=30) as acme:
            _tenant_sees_only_its_own(acme, "acme.one", "beta.secret")
            # a scoped admin writes only in its namespace, whatever name the file carries
            stray = dumps(random_bias_set(tiny_backbone.spec, "beta.stray", seed=3))
            assert acme.post("/tasks", files={"file": ("f", stray)}).status_code == 403
            assert acme.put("/tasks/beta.secret", files={"file": ("f", stray)}).status_code == 403
            assert acme.post("/tasks", files={"file": ("f", stray)}, data={"name": "acme.two"}).status_code == 201
            acme.delete("/tasks/acme.two").raise_for_status()
        with httpx.Client(base_url=url, headers=bearer(BETA), timeout=30) as beta:
            _tenant_sees_only_its_own(beta, "beta.secret", "acme.one")
            assert beta.delete("/tasks/beta.secret").status_code == 403  # predict only
            assert beta.get("/metrics").status_code == 403
        assert httpx.get(f"{url}/metrics").status_code == 401
        scraped = httpx.get(f"{url}/metrics", headers=bearer(METRICS)).text
        assert 'task="beta.secret"' in scraped and 'task="acme.one"' in scraped
        # revoked without a restart
        write_keys(keys, ("beta", BETA, ["predict"], ["beta.*"]))
        assert wait_until(lambda: httpx.get(f"{url}/tasks", headers=bearer(ACME)).status_code == 403, timeout=5)
        assert httpx.get(f"{url}/tasks", headers=bearer(BETA)).status_code == 200
        assert httpx.get(f"{url}/tasks").status_code == 401  # a keys file: reads are never open


def test_the_hint_of_a_scoped_key_is_rebuilt_from_its_scope(tmp_path, tiny_backbone):
    """Filtering the first 20 known names would leak how many others sort before one's own."""
    keys = tmp_path / "keys.json"
    write_keys(keys, ("zed", ACME, ["predict"], ["zed.*"]))
    with serving(tmp_path / "s", tiny_backbone, api_keys=[OPERATOR], keys_file=keys) as c:
        for n in range(22):
            assert upload(c, random_bias_set(tiny_backbone.spec, f"a{n:02d}.x", seed=n), headers=bearer(OPERATOR)).status_code == 201
        assert upload(c, random_bias_set(tiny_backbone.spec, "zed.mine", seed=99), headers=bearer(OPERATOR)).status_code == 201
        started = time.perf_counter()
        r = c.post("/predict/zed.nope", json={"inputs": "x"}, headers=bearer(ACME))
        assert r.status_code == 404 and r.json()["error"]["known_tasks"] == ["zed.mine"]
        assert "a00" not in r.text and time.perf_counter() - started < 5
        r = c.get("/tasks/zed.nope", headers=bearer(ACME))
        assert r.json()["error"]["known_tasks"] == ["zed.mine"] and "a00" not in r.text


@pytest.mark.parametrize("keyed", ["predict_keys", "keys_file"])
def test_readyz_names_unhealthy_tasks_only_to_a_key_that_sees_every_task(keyed, tmp_path, tiny_backbone):
    from bias_store import FilesystemStore, ValidatedUpload

    store = FilesystemStore(tmp_path / "s")
    bias_set = random_bias_set(tiny_backbone.spec, "acme.secret", seed=1)
    store.put(ValidatedUpload(bias_set, dumps(bias_set)))
    (store.folders.dir("acme.secret") / "v000001.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    keys = tmp_path / "keys.json"
    write_keys(keys, ("acme", ACME, ["predict", "admin"], ["acme.*"]), ("ops", BETA, ["predict"], ["*"]))
    settings = {"predict_api_keys": [METRICS]} if keyed == "predict_keys" else {"keys_file": keys}
    with serving(tmp_path / "s", tiny_backbone, load="eager", **settings) as c:
        for headers in ({}, bearer("wrong-key-0123456789abcdef"), bearer(ACME)):  # open probe, bad key, a tenant's key
            ready = c.get("/readyz", headers=headers).json()
            assert (ready["unhealthy_tasks"], ready["unhealthy_count"]) == ({}, 1), headers
            assert "acme" not in json.dumps(ready)
        full = c.get("/readyz", headers=bearer(METRICS if keyed == "predict_keys" else BETA)).json()
        assert list(full["unhealthy_tasks"]) == ["acme.secret"] and full["unhealthy_count"] == 1
    with serving(tmp_path / "s", tiny_backbone, load="eager") as c:  # no keys: the names are anyone's to list
        assert list(c.get("/readyz").json()["unhealthy_tasks"]) == ["acme.secret"]
