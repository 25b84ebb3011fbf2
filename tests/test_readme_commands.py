"""README's "Try it" curl commands, run as written against a real server (uvicorn, the packaged
MiniLM, the bundled demo task): each answers what README says it does.

The commands are read from README itself, so a command that changes there is what runs here;
only the address (`localhost:8000`) becomes the test server's.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.server_support import live_server

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "sentiment" / "sentiment.safetensors"

pytestmark = pytest.mark.minilm


def readme_curl_lines() -> list[str]:
    """Every `curl` line of the bash blocks of README's "Try it", without its trailing comment
    (the production and Docker sections' commands need keys or an image)."""
    text = (ROOT / "README.md").read_text().split("## Try it", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("curl "):
                lines.append(re.sub(r"\s+#.*$", "", line).strip())
    return lines


def run(line: str, url: str, cwd: Path) -> str:
    command = line.replace("localhost:8000", url.removeprefix("http://"))
    result = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    return result.stdout


def test_the_readme_curl_walkthrough(tmp_path, minilm_backbone):
    spec = minilm_backbone.spec
    (tmp_path / "my-task.safetensors").write_bytes(dumps(random_bias_set(spec, "my-task", seed=1)))
    (tmp_path / "my-task-v2.safetensors").write_bytes(dumps(random_bias_set(spec, "my-task", seed=2)))
    lines = readme_curl_lines()
    assert len(lines) >= 7, lines
    with live_server(tmp_path / "store", minilm_backbone, preload=[DEMO]) as url:
        answers = [run(line, url, tmp_path) for line in lines]
    by_path = dict(zip(lines, answers))
    predict = next(a for line, a in by_path.items() if "/predict/sentiment" in line)
    shown = re.search(r"```json\n(\{\"task\":\"sentiment\".*?)\n```", (ROOT / "README.md").read_text(), flags=re.S).group(1)
    got, expected = json.loads(predict), json.loads(shown)
    assert got["predictions"][0]["label"] == expected["predictions"][0]["label"] == "positive"
    assert round(got["predictions"][0]["score"], 4) == expected["predictions"][0]["score"]  # README's figure is the real one
    uploaded = next(json.loads(a) for line, a in by_path.items() if "-X POST" in line and "/tasks " in line + " ")
    assert (uploaded["name"], uploaded["version"]) == ("my-task", 1)
    listed = next(json.loads(a) for line, a in by_path.items() if "/tasks?limit" in line)
    assert {t["name"] for t in listed["tasks"]} >= {"sentiment", "my-task"}
    replaced = next(json.loads(a) for line, a in by_path.items() if "-X PUT" in line)
    assert replaced["version"] == 2
    rolled = next(json.loads(a) for line, a in by_path.items() if "/rollback" in line)
    assert rolled["version"] == 1
    assert next(a for line, a in by_path.items() if "-X DELETE" in line) == ""  # 204
    assert "bitfit_requests_total" in next(a for line, a in by_path.items() if "/metrics" in line)
