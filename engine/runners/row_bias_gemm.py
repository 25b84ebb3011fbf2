"""``out = x @ W^T + B[row // rows_per_bias]``: a GEMM whose epilogue gathers a per-row bias.

cuBLAS fuses one bias vector into its epilogue, never one per row, so the per-row forward
on a GPU pays a second pass over every Linear output (``F.linear(x, W).add_(b)``). This
Triton kernel loads each output tile's bias rows right where it stores the tile: the add
costs no pass of its own. ``B`` is the batch's gathered bias rows for one site
([batch, out], any row stride, so a column slice of ``BiasTable.gather``'s rows serves
as is); GEMM row ``m`` (a token) belongs to batch row ``m // rows_per_bias`` (the
sequence length).

It is a ``torch.library`` custom op (``bitfit::row_bias_linear``) with a fake
implementation, so ``torch.compile`` keeps it as one opaque call inside its graph. On CUDA
it runs the compiled kernel; CPU tensors run only in Triton's interpreter
(``TRITON_INTERPRET=1``), which is slow and there so the CPU test suite checks the kernel.
Triton is optional (the ``gpu`` extra): ``is_triton_available()`` says whether it is importable.
"""

from __future__ import annotations

import functools

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the engine runs without it; the PyTorch runner then never picks the fused form
    triton = None


def is_triton_available() -> bool:
    return triton is not None


if triton is not None:

    def _row_bias_linear_kernel(
        x_ptr, w_ptr, b_ptr, out_ptr, M, N, K, rows_per_bias,
        stride_xm, stride_xk, stride_wn, stride_wk, stride_bb, stride_bn, stride_om, stride_on,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
        PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    ):
        # Tiles in groups of GROUP_M rows of tiles, so neighbouring programs share W in L2.
        pid = tl.program_id(0)
        tiles_m, tiles_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
        group = GROUP_M * tiles_n
        first_m = (pid // group) * GROUP_M
        group_m = tl.minimum(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % group) % group_m
        pid_n = (pid % group) // group_m
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BLOCK_M] GEMM rows (tokens)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N] output features
        rk = tl.arange(0, BLOCK_K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + rk
            a = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :] * stride_xk,
                        mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0)  # [BLOCK_M, BLOCK_K]
            w = tl.load(w_ptr + rn[None, :] * stride_wn + kk[:, None] * stride_wk,
                        mask=(rn[None, :] < N) & (kk[:, None] < K), other=0.0)  # [BLOCK_K, BLOCK_N]
            if UPCAST:  # the interpreter's dot multiplies bf16 bit patterns as integers
                a, w = a.to(tl.float32), w.to(tl.float32)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)
        # The epilogue: each token's own task row of B, added before the only store.
        mask = (rm[:, None] < M) & (rn[None, :] < N)
        rb = rm // rows_per_bias  # [BLOCK_M] batch row of each token
        bias = tl.load(b_ptr + rb[:, None] * stride_bb + rn[None, :] * stride_bn, mask=mask, other=0.0)
        acc += bias.to(tl.float32)
        tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :] * stride_on, acc.to(out_ptr.dtype.element_ty), mask=mask)


@functools.cache
def _kernel():
    """Jitted on first use: under ``TRITON_INTERPRET=1`` (set before triton is imported,
    as tests/conftest.py does without a GPU) ``triton.jit`` gives the interpreter."""
    return triton.jit(_row_bias_linear_kernel)


def interpreting() -> bool:
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4; older ones only run on CUDA here
    return knobs is not None and bool(knobs.runtime.interpret)


def _blocks(m: int, n: int, k: int, interpret: bool) -> tuple[int, int, int]:
    if interpret:  # the interpreter runs each program in numpy: few, large tiles
        return 32, 32, 32
    return (128 if m >= 128 else 64), (128 if n >= 128 else 64), 32


@torch.library.custom_op("bitfit::row_bias_linear", mutates_args=())
def row_bias_linear(x: torch.Tensor, weight: torch.Tensor, bias_rows: torch.Tensor, rows_per_bias: int) -> torch.Tensor:
    """``x`` [M, K], ``weight`` [N, K], ``bias_rows`` [M // rows_per_bias, N] -> [M, N]."""
    if triton is None:
        raise RuntimeError("row_bias_linear needs Triton: pip install 'bitfit-serve[gpu]' (triton)")
    m, k = x.shape
    n = weight.shape[0]
    out = torch.empty((m, n), device=x.device, dtype=x.dtype)
    interpret = interpreting()
    if x.device.type != "cuda" and not interpret:
        raise RuntimeError("row_bias_linear runs CUDA tensors; CPU tensors only under TRITON_INTERPRET=1 (a test mode)")
    block_m, block_n, block_k = _blocks(m, n, k, interpret)
    # fp32 inputs compute in full fp32 unless the process allows TF32, as F.linear does.
    tf32 = x.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    precision = "tf32" if tf32 or x.dtype != torch.float32 else "ieee"
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    _kernel()[grid](
        x, weight, bias_rows, out, m, n, k, rows_per_bias,
        x.stride(0), x.stride(1), weight.stride(0), weight.stride(1),
        bias_rows.stride(0), bias_rows.stride(1), out.stride(0), out.stride(1),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8, PRECISION=precision,
        UPCAST=interpret and x.dtype == torch.bfloat16,
    )
    return out


@row_bias_linear.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias_rows: torch.Tensor, rows_per_bias: int) -> torch.Tensor:
    return x.new_empty((x.shape[0], weight.shape[0]))


def reference(x: torch.Tensor, weight: torch.Tensor, bias_rows: torch.Tensor, rows_per_bias: int) -> torch.Tensor:
    """The same result the unfused way: ``F.linear`` then the per-row add."""
    out = torch.nn.functional.linear(x, weight)  # [M, N]
    return (out.view(-1, rows_per_bias, out.shape[-1]) + bias_rows[:, None, :]).view_as(out)
