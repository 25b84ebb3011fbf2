"""The plain loop's graphs: the stock encoder exported (legacy TorchScript or dynamo; padded
or packed), optionally fused by ONNX Runtime's BERT optimizer, and its session
(``bench/plain_ceiling.py`` times them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TOKEN_INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def export(backbone, path: Path, exporter: str, packed: bool = False) -> None:
    """The stock encoder (hidden states out), by the legacy TorchScript or the dynamo exporter;
    ``packed``: over packed batches (a 4-D block mask and per-row positions in; TorchScript)."""
    import torch

    if packed:
        return _export_packed(backbone, path)

    class Encoder(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.full((3, 7), 100, dtype=torch.long)  # not 1: the exporter would specialise a size-1 dimension
    module, example = Encoder(backbone.encoder).eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids))
    if exporter == "dynamo":
        b, t = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=1, max=backbone.max_length)
        with torch.no_grad():
            program = torch.onnx.export(module, example, dynamo=True, input_names=TOKEN_INPUTS, output_names=["hidden"],
                                        dynamic_shapes={n: {0: b, 1: t} for n in TOKEN_INPUTS}, opset_version=18, verbose=False)
        program.save(str(path), external_data=False)
        return
    with torch.no_grad():
        torch.onnx.export(module, example, str(path),
                          dynamo=False, opset_version=17, input_names=TOKEN_INPUTS, output_names=["hidden"],
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in TOKEN_INPUTS})


def _export_packed(backbone, path: Path) -> None:
    import torch

    from engine.packing import pack

    class Packed(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids, position_ids):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                position_ids=position_ids).last_hidden_state

    ids, mask = np.full((4, 7), 100, dtype=np.int64), np.zeros((4, 7), dtype=np.int64)
    for i, n in enumerate((7, 3, 5, 2)):
        mask[i, :n] = 1
    feeds = pack(ids, mask, np.zeros_like(ids), width=10).feeds
    names = ["input_ids", "attention_mask", "token_type_ids", "position_ids"]
    axes = {n: {0: "bins", 1: "width"} for n in names} | {"attention_mask": {0: "bins", 2: "width", 3: "width"}}
    with torch.no_grad():
        torch.onnx.export(Packed(backbone.encoder).eval(), tuple(torch.from_numpy(feeds[n]) for n in names), str(path),
                          dynamo=False, opset_version=17, input_names=names, output_names=["hidden"], dynamic_axes=axes)


def fuse(source: Path, target: Path, backbone) -> None:
    from onnxruntime.transformers import optimizer

    config = backbone.encoder.config
    model = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size, opt_level=1)
    model.save_model_to_file(str(target))


def session(path: Path, threads: int, spin: bool, profile_prefix: str | None = None):
    """``profile_prefix``: ONNX Runtime's profiler on, its file starting there (``end_profiling``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
