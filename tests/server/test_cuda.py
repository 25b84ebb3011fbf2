"""The server on a GPU (skipped without one): same answers as on the CPU, in fp32 and fp16."""

from __future__ import annotations

import pytest
import torch

from engine import Engine, load_backbone
from tests.helpers import random_bias_set
from tests.server_support import TEXTS, serving, upload


@pytest.mark.cuda
@pytest.mark.parametrize("dtype, atol", [("float32", 1e-4), ("float16", 2e-2)])
def test_gpu_server_matches_cpu_engine(tmp_path, tiny_bert_dir, tiny_backbone, dtype, atol):
    gpu = load_backbone(str(tiny_bert_dir), device="cuda", dtype=dtype)
    sets = [random_bias_set(tiny_backbone.spec, f"t{i}", seed=i) for i in range(3)]
    cpu = Engine(tiny_backbone)
    for bs in sets:
        cpu.register(bs)
    want = {bs.meta.task: [p.scores for p in cpu.predict(bs.meta.task, TEXTS)] for bs in sets}
    with serving(tmp_path / "s", gpu) as client:
        ready = client.get("/readyz").json()
        assert ready["device"].startswith("cuda") and ready["dtype"] == dtype
        for bs in sets:
            assert upload(client, bs).status_code == 201
        items = [{"task": bs.meta.task, "inputs": TEXTS} for bs in sets]
        results = client.post("/predict", json={"items": items}).json()["results"]
    for result in results:
        got = torch.tensor([[p["scores"][k] for k in ("negative", "positive")] for p in result["predictions"]])
        ref = torch.tensor([[s[k] for k in ("negative", "positive")] for s in want[result["task"]]])
        torch.testing.assert_close(got, ref, atol=atol, rtol=0)
