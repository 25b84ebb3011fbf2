"""Several tasks trained in one loop with mixed-task batches export sets the engine serves exactly."""

from __future__ import annotations

import pandas as pd
import torch

from bias_store import validate
from engine import Engine
from engine.inputs import encode
from tests.training.test_bitfit import TEXTS, sentiment_csv
from training.data import load_task_data
from training.joint import JointTask, joint_logits, train_joint
from training.model import load_model


def test_joint_training_exports_each_task_exactly(tmp_path, tiny_bert_dir, tiny_backbone):
    sentiment_csv(tmp_path / "a.csv", n=32)
    topics = {"text": [f"topic {i % 3} words {i}" for i in range(30)], "label": [f"t{i % 3}" for i in range(30)]}
    pd.DataFrame(topics).to_csv(tmp_path / "b.csv", index=False)
    tasks = [JointTask(name, load_task_data(tmp_path / f"{f}.csv", "text", "label")) for name, f in (("ja", "a"), ("jb", "b"))]
    tm = load_model(str(tiny_bert_dir), 2, "single_label_classification", seed=0)
    before = {k: v.clone() for k, v in tm.model.base_model.state_dict().items()}
    result = train_joint(tm, tasks, epochs=2, batch_size=8, pooling="mean")
    joint = result["model"]
    assert all(torch.equal(before[k], v) for k, v in tm.model.base_model.state_dict().items())  # backbone frozen
    sets = result["bias_sets"]
    assert [s.meta.labels for s in sets] == [["negative", "positive"], ["t0", "t1", "t2"]]
    assert not torch.equal(sets[0].tensors["bert.encoder.layer.0.attention.self.query.bias"],
                           sets[1].tensors["bert.encoder.layer.0.attention.self.query.bias"])  # each task its own biases
    engine = Engine(tiny_backbone)
    for k, bias_set in enumerate(sets):
        validate(bias_set, tiny_backbone.spec)
        engine.register(bias_set)
        got = torch.tensor([p.logits for p in engine.predict(bias_set.meta.task, TEXTS)])
        want = joint_logits(joint, k, encode(tm.tokenizer, TEXTS, 128), torch.device("cpu"))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
