"""The real packaged all-MiniLM-L6-v2: spec, fingerprint and the defining property."""

import pytest
import torch

from bias_store import build_spec, fingerprint, validate
from engine import Engine, default_backbone_path, load_classifier
from tests.helpers import random_bias_set, reference_logits

pytestmark = pytest.mark.minilm

TEXTS = ["a gorgeous, witty film", "an overlong, self-indulgent mess", "fine."]


def test_minilm_spec_matches_the_paper_table(minilm_backbone):
    spec = minilm_backbone.spec
    assert spec.model_type == "bert" and spec.hidden_size == 384
    # BITFIT.md: 26,112 bias parameters (0.115% of 22.7M) for all-MiniLM-L6-v2.
    assert spec.bias_params_per_task == 26_112
    assert len(spec.sites) == 6 * 8 + 2  # 8 per layer + embeddings LayerNorm + pooler
    assert len(spec.site_keys("query_intermediate")) == 12


def test_fingerprint_is_stable_and_sensitive(minilm_backbone):
    model = load_classifier(default_backbone_path(), num_labels=2)
    again = build_spec(model.base_model, "bert", model.base_model_prefix, "x")
    assert again.fingerprint == minilm_backbone.spec.fingerprint
    with torch.no_grad():
        model.base_model.encoder.layer[5].output.dense.weight[0, 0] += 1e-3
    assert fingerprint(model.base_model) != minilm_backbone.spec.fingerprint


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_engine_equals_transformers_with_the_bias_set_loaded(minilm_backbone, pooling):
    spec = minilm_backbone.spec
    engine = Engine(minilm_backbone)
    sets = [random_bias_set(spec, f"m{i}", ["neg", "pos"], seed=i, pooling=pooling, scale=0.05) for i in range(3)]
    for bs in sets:
        validate(bs, spec)
        engine.register(bs)
    items = [(engine.get(bs.meta.task), row) for bs in sets for row in engine.encode(engine.get(bs.meta.task), TEXTS)]
    got = torch.stack(engine.logits(items))
    want = torch.cat([reference_logits(default_backbone_path(), bs, TEXTS) for bs in sets])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
