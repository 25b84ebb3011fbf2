"""The fused per-row-bias GEMM equals ``F.linear`` + the per-row add (Triton's interpreter on the CPU)."""

import pytest
import torch

from engine.runners import row_bias_gemm
from engine.runners.row_bias_gemm import reference, row_bias_linear

pytestmark = pytest.mark.skipif(not row_bias_gemm.is_triton_available(), reason="needs triton (the test extra installs it)")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Tile edges on purpose: M, N and K are not multiples of the 32-wide tiles.
SHAPES = [(3, 5, 40, 72), (2, 17, 33, 31), (1, 1, 8, 16)]  # batch, tokens per batch row, K, N


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_equals_linear_plus_the_rows_bias(dtype, shape):
    batch, tokens, k, n = shape
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(batch * tokens, k, generator=g).to(DEVICE, dtype)
    weight = torch.randn(n, k, generator=g).to(DEVICE, dtype)
    table_rows = torch.randn(batch, n + 50, generator=g).to(DEVICE, dtype)
    bias_rows = table_rows[:, 20 : 20 + n]  # a column slice of the gathered rows, as per_row passes it
    got = row_bias_linear(x, weight, bias_rows, tokens)
    want = reference(x.float(), weight.float(), bias_rows.float(), tokens).to(dtype)
    assert got.dtype == dtype and got.shape == (batch * tokens, n)
    torch.testing.assert_close(got, want)  # the dtype's default tolerance


def test_a_row_gets_its_own_bias_row():
    """Zero weights: the output is exactly each token's batch row of the biases."""
    x, weight = torch.randn(6, 8, device=DEVICE), torch.zeros(4, 8, device=DEVICE)
    bias_rows = torch.arange(12.0, device=DEVICE).view(3, 4)
    assert torch.equal(row_bias_linear(x, weight, bias_rows, 2), bias_rows.repeat_interleave(2, dim=0))


def test_is_one_opaque_op_under_torch_compile():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()

    def site(x, weight, bias_rows):  # [batch, tokens, k] -> [batch, tokens, n], then a pointwise op
        out = row_bias_linear(x.reshape(-1, x.shape[-1]), weight, bias_rows, x.shape[1])
        return torch.nn.functional.gelu(out.view(*x.shape[:-1], -1))

    compiled = torch.compile(site, fullgraph=True, dynamic=True, backend="aot_eager")
    weight = torch.randn(16, 8, device=DEVICE)
    for batch, tokens in ((2, 3), (4, 3), (3, 5)):
        x, bias_rows = torch.randn(batch, tokens, 8, device=DEVICE), torch.randn(batch, 16, device=DEVICE)
        torch.testing.assert_close(compiled(x, weight, bias_rows), site(x, weight, bias_rows))
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()
