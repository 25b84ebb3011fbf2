"""The ONNX Runtime runner: the exported encoder under ONNX Runtime, and choosing the backend.

``OrtEncoder`` takes the engine's padded batch and each row's absolute biases and returns
what the PyTorch encoder would: the last hidden state and, for BERT, the pooler output, as
CPU tensors that share the runtime's buffers (no copy). The heads stay in torch
(``head_batch``): they are a GEMM over the pooled rows, a few percent of a forward.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.backbone import Backbone
from engine.layout import SiteLayout
from engine.packing import Packed, pack, unpack
from engine.runners.onnx_export import cached_graph

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "auto")


def is_onnxruntime_available() -> bool:
    """Whether the optional ONNX Runtime backend (the ``onnx`` extra) is installed; nothing is imported."""
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: ONNX Runtime on the CPU when it is installed, PyTorch otherwise (and on a GPU)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and is_onnxruntime_available() else "torch"
    if backend == "onnxruntime":
        if device.type != "cpu":
            raise ValueError("the onnxruntime backend runs on the CPU; use --backend torch on a GPU")
        if not is_onnxruntime_available():
            raise ValueError('the onnxruntime backend needs onnxruntime: pip install "bitfit-serve[onnx]"')
    return backend


@dataclass(frozen=True)
class OnnxOptions:
    """How the engine runs its encoder under ONNX Runtime."""

    cache_dir: Path  # exported graphs, one folder per backbone fingerprint and exporter version
    quantize: str = "none"  # "none" | "int8" (dynamic quantization of the MatMul weights)
    threads: int = 1  # intra-op threads
    spin: bool = False  # spin-wait between ops: only where the cores are the runtime's alone
    pack: bool = True  # run packed batches where the encoder allows (engine.packing)


def onnx_options(backend: str, device: torch.device, cache_dir: Path, quantize: str = "none", threads: int = 1,
                 spin: bool = False, pack: bool = True) -> OnnxOptions | None:
    """The engine's ONNX Runtime options when ``backend`` resolves to it, else None (PyTorch)."""
    if resolve_backend(backend, device) == "torch":
        if quantize != "none":
            raise ValueError("--quantize int8 needs the onnxruntime backend")
        return None
    return OnnxOptions(Path(cache_dir), quantize, threads, spin, pack)


class OrtEncoder:
    """One ONNX Runtime session over the cached graph. Threads may call it at once: a
    session runs concurrent ``run`` calls, each on its caller's thread plus its own share of
    the intra-op pool, with inputs and outputs of its own.

    Called like ``runners.pytorch.RowBiasedEncoder``: ``(rows=, input_ids=, attention_mask=, [token_type_ids=])``
    -> (hidden [batch, seq, hidden], pooler [batch, hidden] or None).
    """

    thread_safe = True
    packs = False  # set per graph: True when it runs packed batches (engine.packing)

    def __init__(self, path: Path, options: OnnxOptions, layout: SiteLayout | None = None, backbone: Backbone | None = None) -> None:
        """``layout`` and ``backbone``: what the graph was exported from (``for_backbone``
        sets them), so that ``for_layout`` can export its wider sibling."""
        import onnxruntime as ort

        self.backend = "onnxruntime" if options.quantize == "none" else f"onnxruntime-{options.quantize}"
        self.options, self.layout, self._backbone = options, layout, backbone
        session = ort.SessionOptions()
        session.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session.intra_op_num_threads = options.threads
        session.inter_op_num_threads = 1
        # Spinning intra-op threads hold a core after each op; on a small machine the event
        # loop and the tokenizers need it back (docs/OPERATIONS.md, threads).
        session.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
        self.session = ort.InferenceSession(str(path), session, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.packs = "segment" in self.inputs  # a graph over packed batches (engine.packing)

    @classmethod
    def for_backbone(cls, backbone: Backbone, layout: SiteLayout, options: OnnxOptions) -> "OrtEncoder":
        return cls(cached_graph(backbone, layout, options.cache_dir, options.quantize, options.pack), options, layout, backbone)

    def for_layout(self, layout: SiteLayout) -> "OrtEncoder":
        """A session over the graph for rows laid out as ``layout`` (exported, or read from the
        cache, now: the caller does this outside the forward lock)."""
        if self._backbone is None:
            raise RuntimeError("this OrtEncoder was built from a file; build it with for_backbone to change its layout")
        return OrtEncoder.for_backbone(self._backbone, layout, self.options)

    def warm_up(self, max_batch: int, max_length: int) -> None:
        """Nothing to do: the session was built (and its graph exported) at construction."""

    def __call__(self, rows: torch.Tensor, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A padded batch in, its states out in the padded layout, whether or not the graph packs."""
        feeds, packed = self.feeds(rows, **batch)
        out = self.session.run(None, feeds)
        hidden = torch.from_numpy(unpack(out[0], packed) if packed is not None else out[0])  # padded: shares the runtime's buffer
        pooler = torch.from_numpy(out[1]) if len(out) > 1 else None
        return hidden, pooler

    def feeds(self, rows: torch.Tensor, **batch: torch.Tensor) -> tuple[dict[str, np.ndarray], Packed | None]:
        """The session's feeds for a padded batch, and its packing (None when the graph pads)."""
        ids = batch["input_ids"].numpy()
        # A tokenizer without token types (RoBERTa's) leaves them out; the encoder's default is zeros.
        types = batch["token_type_ids"].numpy() if "token_type_ids" in batch else np.zeros_like(ids)
        packed = None
        if self.packs:
            packed = pack(ids, batch["attention_mask"].numpy(), types if "token_type_ids" in self.inputs else None)
            feeds = dict(packed.feeds)
        else:
            feeds = {"input_ids": ids, "attention_mask": batch["attention_mask"].numpy(), "token_type_ids": types}
        feeds = {name: feeds[name] for name in self.inputs if name != "rows"}
        feeds["rows"] = np.ascontiguousarray(rows.numpy())  # [batch, width]
        return feeds, packed
