"""Who runs the encoder: one runner per backend, chosen once when the engine is built.

Every runner is called the same way, ``runner(rows=[batch, width], input_ids=, attention_mask=,
[token_type_ids=]) -> (hidden [batch, seq, hidden], pooler [batch, hidden] or None)``, with the
batch's gathered absolute bias rows (``BiasTable.gather``) as an input, so one graph or
session serves every task mix:

- ``pytorch.RowBiasedEncoder``: eager PyTorch (the default; CPU and GPU);
- ``compiled.CompiledEncoder``: the same under ``torch.compile`` (``--compile``);
- ``ort.OrtEncoder``: the exported graph under ONNX Runtime (``--backend onnxruntime``, CPU).

Optional backends sit behind ``is_*_available()`` (nothing is imported to answer):
``is_onnxruntime_available`` (the ``onnx`` extra) and ``is_triton_available`` (the ``gpu``
extra: the fused per-row GEMM of ``row_bias_gemm``, which ``form_choice`` picks on CUDA where
it measures faster).

ONNX Runtime's runner also ``packs``: where the encoder allows, its graph runs several short
rows side by side in one sequence (``engine.packing``), so padding costs nothing and the
engine needs no length split. It still takes and returns the padded layout.

Only ONNX Runtime's runner is ``thread_safe``: a session runs concurrent calls, each with its
own inputs, so the server can run several forwards at once. PyTorch's runners put a batch's
rows into the encoder's site modules for the length of a forward, so theirs run one at a time.

A runner also knows its row layout and makes a sibling for another (``for_layout``), which
is how the engine widens its rows when the first ``bitfit-ln`` set arrives; and it does its
start-up work in ``warm_up``.
"""

from __future__ import annotations

from typing import Protocol

import torch

from engine.backbone import Backbone
from engine.layout import SiteLayout
from engine.runners.compiled import COMPILE_MODES, CompiledEncoder
from engine.runners.ort import BACKENDS, OnnxOptions, OrtEncoder, is_onnxruntime_available, onnx_options, resolve_backend
from engine.runners.pytorch import RowBiasedEncoder
from engine.runners.row_bias_gemm import is_triton_available


class Runner(Protocol):
    backend: str  # "torch", "onnxruntime" or "onnxruntime-int8"
    layout: SiteLayout  # how the rows it takes are laid out
    thread_safe: bool  # two threads may run forwards at once (each with its own rows)
    packs: bool  # it packs each padded batch's rows into fewer, fuller sequences (engine.packing)

    def __call__(self, rows: torch.Tensor, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def for_layout(self, layout: SiteLayout) -> Runner:
        """A new runner of the same kind for rows laid out as ``layout``."""

    def warm_up(self, max_batch: int, max_length: int) -> None:
        """Start-up work (measure, compile), so that no request pays for it."""


def build_runner(backbone: Backbone, layout: SiteLayout, compile_mode: str = "off", onnx: OnnxOptions | None = None) -> Runner:
    """The runner for these settings: ONNX Runtime when ``onnx`` is given, else PyTorch,
    compiled unless ``compile_mode`` is "off"."""
    if onnx is not None:
        if compile_mode != "off":
            raise ValueError("compile applies to the PyTorch backend; with ONNX Runtime leave it off")
        return OrtEncoder.for_backbone(backbone, layout, onnx)
    encoder = RowBiasedEncoder(backbone.encoder, layout)
    if compile_mode == "off":
        return encoder
    return CompiledEncoder(encoder, compile_mode, backbone.max_length)


__all__ = [
    "BACKENDS", "COMPILE_MODES", "CompiledEncoder", "OnnxOptions", "OrtEncoder", "RowBiasedEncoder", "Runner",
    "build_runner", "is_onnxruntime_available", "is_triton_available", "onnx_options", "resolve_backend",
]
