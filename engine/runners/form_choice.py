"""Pick how Linear sites add per-row biases on CUDA: the fused Triton GEMM only where it is faster.

The fused GEMM (``row_bias_gemm``) saves a pass over every Linear output, but cuBLAS's
GEMM is faster than a Triton one on some shapes and GPUs; which wins is measured, not
assumed: one representative batch through the whole per-row forward, both forms
interleaved, at start-up.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import TYPE_CHECKING

import torch

from engine.runners import row_bias_gemm

if TYPE_CHECKING:
    from engine.runners.pytorch import RowBiasedEncoder

log = logging.getLogger(__name__)


def pick_linear_form(encoder: "RowBiasedEncoder", batch: int, length: int = 128, reps: int = 10) -> str:
    """"fused" when Triton is present and its forward's median time beats "add"'s; else "add"."""
    device = next(encoder.parameters()).device
    if device.type != "cuda" or not row_bias_gemm.is_triton_available():
        return "add"
    dtype = next(encoder.parameters()).dtype
    with torch.inference_mode():
        ids = torch.randint(1000, 2000, (batch, length), device=device)
        mask = torch.ones_like(ids)
        rows = encoder.layout.base().to(device, dtype).expand(batch, -1).contiguous()  # [batch, width]
        times: dict[str, list[float]] = {"add": [], "fused": []}
        for rep in range(reps + 2):  # two rounds of warm-up (the Triton kernel compiles on first use)
            for form in times:
                encoder.linear_form = form
                torch.cuda.synchronize()
                start = time.perf_counter()
                encoder(ids, mask, rows)
                torch.cuda.synchronize()
                if rep >= 2:
                    times[form].append(time.perf_counter() - start)
    medians = {form: statistics.median(t) for form, t in times.items()}
    choice = "fused" if medians["fused"] < medians["add"] else "add"
    encoder.linear_form = choice
    log.info("per-row Linear form: %s (fused / add = %.3f at batch %d x %d)", choice, medians["fused"] / medians["add"], batch, length)
    return choice
