"""The console's server side without a browser: /ui and its headers, the setting that turns it
off, GET /stats and /stats/tasks, and GET /tasks/{task}?version=N."""

from __future__ import annotations

import json

import pytest

from server.process.figures import quantile
from server.process.settings import Settings
from tests.helpers import random_bias_set, wait_until
from tests.server_support import TEXTS, serving, upload

# What would parse data as HTML or code, or write an inline style the CSP refuses anyway.
SINKS = r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['\"]style"


@pytest.mark.parametrize(("host", "console", "served"), [
    ("127.0.0.1", "auto", True), ("::1", "auto", True), ("localhost", "auto", True), ("127.0.0.2", "auto", True),
    ("0.0.0.0", "auto", False), ("10.1.2.3", "auto", False), ("myhost", "auto", False),
    ("0.0.0.0", "on", True), ("127.0.0.1", "off", False),
])
def test_console_setting(host, console, served):
    assert Settings(host=host, console=console).console_enabled() is served


def test_ui_page_and_assets_carry_a_strict_policy(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone) as client:
        for path in ("/ui", "/ui/", "/ui/assets/app.js", "/ui/assets/app.css", "/ui/assets/pages/tasks.js"):
            r = client.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
        page = client.get("/ui").text
        assert '<script type="module" src="/ui/assets/app.js"></script>' in page
        assert "<style" not in page and " style=" not in page and "onload" not in page  # nothing inline
        assert client.get("/ui/assets/app.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/assets/nothing.js").status_code == 404
        assert client.get("/ui/assets/../../app.py").status_code == 404


def test_every_asset_the_page_imports_is_shipped(tmp_path, tiny_backbone):
    """Each module's static imports resolve to a file the server serves (no CDN, no bare specifier)."""
    import re

    from server.http.routes.console import ROOT

    modules = sorted((ROOT / "assets").rglob("*.js"))
    assert modules
    with serving(tmp_path / "store", tiny_backbone) as client:
        for module in modules:
            for spec in re.findall(r"""^import[^'"]*['"]([^'"]+)['"]""", module.read_text(), re.M):
                assert spec.startswith("./") or spec.startswith("../"), f"{module.name}: {spec}"
                target = (module.parent / spec).resolve()
                url = "/ui/assets/" + target.relative_to((ROOT / "assets").resolve()).as_posix()
                assert client.get(url).status_code == 200, url
            code = module.read_text()
            sinks = re.findall(SINKS, code)
            assert not sinks, f"{module.name} must build the DOM from Text nodes: {sinks}"
            assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", code), f"{module.name}: a URL off this server"


def test_console_off(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone, console="off") as client:
        assert client.get("/ui").status_code == 404
        assert client.get("/ui/assets/app.js").status_code == 404
        assert client.get("/healthz").status_code == 200


def test_stats_counts_and_sync(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone) as client:
        assert upload(client, random_bias_set(tiny_backbone.spec, "alpha")).status_code == 201
        assert client.post("/predict/alpha", json={"inputs": TEXTS}).status_code == 200
        stats = client.get("/stats").json()
        assert stats["catalog_tasks"] == 1 and stats["resident_tasks"] == 1
        assert stats["sync_ok"] is True and stats["sync_problem"] is None
        # The watcher applies the upload's change-log entry on its next poll.
        assert wait_until(lambda: client.get("/stats").json()["generation"] >= 1, timeout=10)
        assert stats["cold_loads"] >= 0 and stats["evictions"] == 0


def test_task_stats_latency_and_bounds(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone, metrics_max_tasks=1) as client:
        for name in ("alpha", "beta"):
            assert upload(client, random_bias_set(tiny_backbone.spec, name)).status_code == 201
        for _ in range(3):
            assert client.post("/predict/alpha", json={"inputs": TEXTS}).status_code == 200
        assert client.post("/predict/beta", json={"inputs": TEXTS}).status_code == 200
        assert client.post("/predict/alpha?version=9", json={"inputs": TEXTS}).status_code == 404  # counted as an error
        answer = client.get("/stats/tasks", params={"names": "alpha,beta,ghost,alpha"}).json()
        alpha, beta, ghost = answer["tasks"]
        assert (alpha["name"], alpha["tracked"], alpha["requests"], alpha["errors"], alpha["latency_count"]) == ("alpha", True, 4, 1, 3)
        assert 0 < alpha["p50_ms"] <= alpha["p95_ms"]
        assert beta == {"name": "beta", "tracked": False} | {k: None for k in ("requests", "errors", "latency_count", "p50_ms", "p95_ms")}
        assert ghost["tracked"] is False and answer["max_tracked"] == 1
        too_many = ",".join(f"t{i}" for i in range(201))
        r = client.get("/stats/tasks", params={"names": too_many})
        assert r.status_code == 422 and "at most 200" in json.dumps(r.json())


def test_task_stats_follow_the_keys_scope(tmp_path, tiny_backbone):
    keys = tmp_path / "keys.json"
    import hashlib

    def entry(key, tasks):
        return {"name": key[:4], "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["predict", "admin"], "tasks": tasks}

    keys.write_text(json.dumps({"keys": [entry("acme-key-0123456789ab", ["acme.*"]), entry("root-key-0123456789ab", ["*"])]}))
    with serving(tmp_path / "store", tiny_backbone, keys_file=keys) as client:
        root = {"Authorization": "Bearer root-key-0123456789ab"}
        acme = {"Authorization": "Bearer acme-key-0123456789ab"}
        for name in ("acme.one", "other.two"):
            assert upload(client, random_bias_set(tiny_backbone.spec, name), headers=root).status_code == 201
            assert client.post(f"/predict/{name}", json={"inputs": TEXTS}, headers=root).status_code == 200
        seen = {t["name"]: t["tracked"] for t in client.get("/stats/tasks?names=acme.one,other.two", headers=acme).json()["tasks"]}
        assert seen == {"acme.one": True, "other.two": False}
        assert client.get("/stats/tasks?names=acme.one").status_code == 401
        assert client.get("/stats").status_code == 401


def test_get_task_of_a_kept_version(tmp_path, tiny_backbone):
    with serving(tmp_path / "store", tiny_backbone) as client:
        for seed in (1, 2):
            assert upload(client, random_bias_set(tiny_backbone.spec, "alpha", seed=seed)).status_code == 201
        first, current = client.get("/tasks/alpha?version=1").json(), client.get("/tasks/alpha").json()
        assert (first["version"], first["training"]["seed"], first["loaded"]) == (1, 1, False)
        assert (current["version"], current["training"]["seed"], current["versions"]) == (2, 2, [1, 2])
        missing = client.get("/tasks/alpha?version=9")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"
        assert client.get("/tasks/alpha?version=0").status_code == 422


@pytest.mark.parametrize(("buckets", "q", "expected"), [
    ([], 0.5, None),
    ([(0.1, 0), (float("inf"), 0)], 0.5, None),
    ([(0.1, 10), (0.2, 10), (float("inf"), 10)], 0.5, 0.05),  # all in the first bucket: half its width
    ([(0.1, 0), (0.2, 10), (float("inf"), 10)], 0.5, 0.15),
    ([(0.1, 5), (0.2, 5), (float("inf"), 10)], 0.9, 0.2),  # in +Inf: the last finite bound
    ([(0.2, 4), (0.1, 2), (float("inf"), 4)], 0.5, 0.1),  # unsorted input
])
def test_quantile(buckets, q, expected):
    got = quantile(buckets, q)
    assert got == expected if expected is None else got == pytest.approx(expected)


def test_every_console_file_is_package_data():
    """A wheel carries the console: every file under server/http/console matches a package-data glob."""
    import fnmatch

    from server.http.routes.console import ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((ROOT.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["server.http"]
    files = [p.relative_to(ROOT.parent).as_posix() for p in ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert files and all(any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs) for f in files), files
