"""The vectorised row build equals the site-by-site one (the shortcuts' fold, then one write
per site) bit for bit, for every mix of sites a task may hold."""

from __future__ import annotations

import pytest
import torch

from bias_store.sites import architecture
from engine import load_backbone
from engine.tables import BiasTable
from tests.helpers import random_bias_set, save_tiny_backbone


def reference_row(table: BiasTable, biases: dict, gains: dict | None) -> torch.Tensor:
    """The row as the table built it before the builder: fold, then a loop over the sites."""
    layout = table.layout
    if table.shortcuts is not None:
        biases = table.shortcuts.fold(biases, {site: module.bias for site, module in layout.modules.items()})
    row = layout.base().float().cpu().clone()
    for site, value in biases.items():
        start, stop = layout.offsets[site]
        row[start:stop] = value.float().cpu()
    for site, value in (gains or {}).items():
        start, stop = layout.gain_offsets[site]
        row[start:stop] = value.float().cpu()
    return row


def site_dicts(spec, bias_set, leave_out: tuple[str, ...] = ()):
    biases = spec.site_biases(bias_set.tensors)
    return {s: v for s, v in biases.items() if not s.endswith(leave_out)}


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_builder_equals_the_site_by_site_row(tmp_path, model_type):
    backbone = load_backbone(str(save_tiny_backbone(tmp_path / model_type, model_type, seed=5)), device="cpu")
    spec = backbone.spec
    table = BiasTable(backbone.encoder, 4, model_type)
    assert table.shortcuts is not None
    roles = architecture(model_type).attention
    first_output = table.shortcuts.blocks[0].output
    cases = [
        site_dicts(spec, random_bias_set(spec, "all", seed=1)),
        site_dicts(spec, random_bias_set(spec, "qi", seed=2, subset="query_intermediate")),
        site_dicts(spec, random_bias_set(spec, "none", seed=3, subset="none")),
        site_dicts(spec, random_bias_set(spec, "no-value", seed=4), leave_out=("." + roles.value,)),
        site_dicts(spec, random_bias_set(spec, "no-output", seed=5), leave_out=("." + roles.output,)),
        site_dicts(spec, random_bias_set(spec, "one-output-less", seed=5), leave_out=(first_output,)),
    ]
    first_value_only = site_dicts(spec, random_bias_set(spec, "one-value", seed=6))
    del first_value_only[table.shortcuts.blocks[-1].value]  # one block folds, the other keeps b_v0
    cases.append(first_value_only)
    for biases in cases:
        got = table.task_row(biases)
        assert torch.equal(got, reference_row(table, biases, None)), sorted(biases)[:3]


def test_builder_equals_the_site_by_site_row_with_gains(tmp_path):
    backbone = load_backbone(str(save_tiny_backbone(tmp_path / "bert", "bert", seed=6)), device="cpu")
    spec = backbone.spec
    table = BiasTable(backbone.encoder, 4, "bert")
    table.enable_gains(table.layout_with_gains())
    g = torch.Generator().manual_seed(9)
    gains = {site: 1 + 0.3 * torch.randn(dim, generator=g) for site, dim in spec.gain_sites.items()}
    biases = site_dicts(spec, random_bias_set(spec, "ln", seed=7))
    assert torch.equal(table.task_row(biases, gains), reference_row(table, biases, gains))
    some = dict(list(gains.items())[::2])  # a set with only some gains keeps the others at the backbone's
    assert torch.equal(table.task_row(biases, some), reference_row(table, biases, some))
    assert torch.equal(table.task_row(biases), reference_row(table, biases, None))


def test_a_written_slot_holds_the_delta_of_the_built_row(tmp_path):
    backbone = load_backbone(str(save_tiny_backbone(tmp_path / "bert", "bert", seed=7)), device="cpu")
    table = BiasTable(backbone.encoder, 2, "bert", grow=False)
    biases = site_dicts(backbone.spec, random_bias_set(backbone.spec, "t", seed=8))
    slot = table.write(biases)
    want = (reference_row(table, biases, None) - table.layout.base().float()).to(table.dtype)
    assert torch.equal(table.table[slot], want)
