"""deploy/grafana/bitfit.json: importable anywhere, scoped to one job and instance, one unit per axis.

On a shared Prometheus every server's (and every other program's) ``process_*`` series sit
side by side: a query without the ``job``/``instance`` matchers plots all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bitfit.json"
SELECTOR = re.compile(r"\b((?:bitfit|process|python)_[a-z_]+)\b(\{[^}]*\})?")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _targets(dashboard: dict) -> list[tuple[dict, str]]:
    return [(panel, target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def unscoped(expr: str) -> list[str]:
    """The metric selectors of ``expr`` that do not filter by the job and instance variables."""
    return [m.group(0) for m in SELECTOR.finditer(expr)
            if 'job=~"$job"' not in (m.group(2) or "") or 'instance=~"$instance"' not in (m.group(2) or "")]


def test_every_query_filters_by_job_and_instance():
    exprs = [expr for _, expr in _targets(_dashboard())]
    assert any(re.search(r"\b(process|python)_", e) for e in exprs)  # the process panels are there
    assert {e: unscoped(e) for e in exprs if unscoped(e)} == {}


@pytest.mark.parametrize("expr, bad", [
    ("rate(process_cpu_seconds_total[1m])", ["process_cpu_seconds_total"]),
    ('process_resident_memory_bytes{job=~"$job"}', ['process_resident_memory_bytes{job=~"$job"}']),
    ('bitfit_x{job=~"$job",instance=~"$instance",task!=""} / bitfit_y', ["bitfit_y"]),
])
def test_the_scope_check_can_fail(expr, bad):
    assert unscoped(expr) == bad


def test_job_and_instance_variables_inputs_and_requires():
    dashboard = _dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= set(variables)
    assert "job" in variables["instance"]["definition"]  # instances of the chosen job only
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert {r["id"] for r in dashboard["__requires"]} >= {"grafana", "prometheus", "timeseries"}


def test_seconds_never_share_an_axis_with_counts():
    for panel in _dashboard()["panels"]:
        names = {m.group(1) for t in panel["targets"] for m in SELECTOR.finditer(t["expr"])}
        timed = {n for n in names if re.search(r"_seconds(_bucket)?$", n) and not n.startswith("process_cpu")}
        if panel["fieldConfig"]["defaults"]["unit"] == "s":
            assert names == timed, panel["title"]
        else:
            assert not timed, panel["title"]


def test_the_residency_panels_are_there():
    exprs = " ".join(expr for _, expr in _targets(_dashboard()))
    for name in ("bitfit_tasks_loaded", "bitfit_catalog_tasks", "bitfit_evictions_total", "bitfit_cold_loads_total",
                 "bitfit_cold_load_seconds_bucket", "bitfit_task_hits_total", "bitfit_task_misses_total"):
        assert name in exprs, name
    ratio = next(p for p in _dashboard()["panels"] if "hit ratio" in p["title"])
    assert ratio["fieldConfig"]["defaults"]["max"] == 1


def test_panels_do_not_overlap():
    cells = set()
    for panel in _dashboard()["panels"]:
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, panel["title"]
        cells |= mine
