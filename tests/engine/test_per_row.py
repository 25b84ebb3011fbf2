"""per_row_biases: every batch row computes what the stock encoder computes with that row's biases."""

import copy

import pytest
import torch
from torch import nn

from engine.layout import SiteLayout
from engine.runners.pytorch import LINEAR_FORMS, per_row_biases

BATCH, LENGTH = 3, 7


def inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (BATCH, LENGTH), generator=g)
    mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    mask[1, 5:] = 0  # padding in one row
    return {"input_ids": ids, "attention_mask": mask}


def random_rows(layout: SiteLayout, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return layout.base() + 0.2 * torch.randn(BATCH, layout.width, generator=g)  # [batch, width]


def stock_with_biases(encoder: nn.Module, layout: SiteLayout, row: torch.Tensor) -> nn.Module:
    """A copy of the encoder with ``row`` written into its bias parameters: the reference."""
    model = copy.deepcopy(encoder)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for site, bias in layout.split(row).items():
            modules[site].bias.copy_(bias)
    return model


def no_instance_forwards(encoder: nn.Module) -> bool:
    return all("forward" not in m.__dict__ for m in encoder.modules())


@pytest.mark.parametrize("form", sorted(LINEAR_FORMS))
def test_each_row_equals_the_stock_encoder_with_its_biases(tiny_backbone, form):
    encoder = tiny_backbone.encoder
    layout = SiteLayout(encoder)
    rows, batch = random_rows(layout), inputs()
    with torch.inference_mode():
        with per_row_biases(layout, rows, form):
            got = encoder(**batch)
        for i in range(BATCH):
            want = stock_with_biases(encoder, layout, rows[i])(**{k: v[i : i + 1] for k, v in batch.items()})
            torch.testing.assert_close(got.last_hidden_state[i], want.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(got.pooler_output[i], want.pooler_output[0], atol=1e-5, rtol=0)
    assert no_instance_forwards(encoder)


def test_gradients_reach_each_rows_biases_as_in_the_stock_encoder(tiny_backbone):
    """Joint training backpropagates into ``rows``: the same gradients as the stock bias parameters."""
    encoder = tiny_backbone.encoder
    layout = SiteLayout(encoder)
    rows, batch = random_rows(layout, seed=1).requires_grad_(), inputs(seed=1)

    def loss(out) -> torch.Tensor:  # reads every site, the pooler included
        return out.last_hidden_state.square().sum() + out.pooler_output.sum()

    with per_row_biases(layout, rows):
        loss(encoder(**batch)).backward()
    for i in range(BATCH):
        model = stock_with_biases(encoder, layout, rows[i].detach()).requires_grad_()
        loss(model(**{k: v[i : i + 1] for k, v in batch.items()})).backward()
        modules = dict(model.named_modules())
        for site, grad in layout.split(rows.grad[i]).items():
            torch.testing.assert_close(grad, modules[site].bias.grad, atol=1e-4, rtol=1e-4, msg=f"row {i}, {site}")
    assert all(p.grad is None for p in encoder.parameters())  # the shared encoder gets no gradient


def test_a_linear_subclass_gets_the_hook_and_the_same_answer(tiny_backbone):
    class TracedLinear(nn.Linear):
        pass

    encoder = copy.deepcopy(tiny_backbone.encoder)
    query = encoder.encoder.layer[0].attention.self.query
    traced = TracedLinear(query.in_features, query.out_features)
    traced.load_state_dict(query.state_dict())
    encoder.encoder.layer[0].attention.self.query = traced
    layout = SiteLayout(encoder)
    assert "encoder.layer.0.attention.self.query" in layout.modules
    rows, batch = random_rows(layout, seed=2), inputs(seed=2)
    with torch.inference_mode():
        with per_row_biases(layout, rows):
            assert traced._forward_hooks and "forward" not in traced.__dict__
            got = encoder(**batch).last_hidden_state
        want = stock_with_biases(encoder, layout, rows[0])(**{k: v[:1] for k, v in batch.items()}).last_hidden_state
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=0)
    assert not traced._forward_hooks


def test_outside_the_block_the_encoder_is_stock_even_after_an_error(tiny_backbone):
    encoder = tiny_backbone.encoder
    layout = SiteLayout(encoder)
    rows, batch = random_rows(layout), inputs()
    with torch.inference_mode():
        plain = encoder(**batch).last_hidden_state
        with pytest.raises(ValueError, match="inside"):
            with per_row_biases(layout, rows):
                raise ValueError("failed inside the block")
        assert no_instance_forwards(encoder)
        assert torch.equal(encoder(**batch).last_hidden_state, plain)


def test_a_second_block_on_the_same_encoder_is_refused_and_the_first_keeps_working(tiny_backbone):
    encoder = tiny_backbone.encoder
    layout = SiteLayout(encoder)
    rows, batch = random_rows(layout), inputs()
    with torch.inference_mode():
        with per_row_biases(layout, rows):
            first = encoder(**batch).last_hidden_state
            with pytest.raises(RuntimeError, match="already inside"):
                with per_row_biases(layout, rows.flip(0)):
                    pass
            assert torch.equal(encoder(**batch).last_hidden_state, first)
    assert no_instance_forwards(encoder)
