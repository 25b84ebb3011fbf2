"""Where the ONNX Runtime engine's time goes, per batch: the encoder graph vs the heads in torch.

Decides whether the heads belong in the graph: they can save at most their own share.
MiniLM, ``--batch`` rows of the HTTP benchmarks' short texts, every row a different task
(``head_batch``: one GEMM over the batch's stacked heads), CPU time of ``--repeats`` calls
each, interleaved::

    .venv/bin/python bench/engine_onnx_heads.py --cache /tmp/onnx-cache
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common
import torch

from bench.http_load import short_texts
from engine import Engine, load_backbone
from engine.head_batch import batch_logits
from engine.inputs import collate
from engine.runners import OnnxOptions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--cache", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    common.setup(1, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        backbone = load_backbone(device="cpu")
        engine = Engine(backbone, onnx=OnnxOptions(Path(args.cache or tmp)))
        handles = common.register_random_tasks(engine, args.batch)
        rows = [engine.encode(h, [t])[0] for h, t in zip(handles, short_texts(args.batch))]
        batch = collate(rows, backbone.tokenizer.pad_token_id or 0, backbone.device)
        slots = torch.tensor([h.slot for h in handles])
        hidden, pooler = engine.runner(rows=engine.table.gather(slots), **batch)
        variants = {
            "encoder": lambda: engine.runner(rows=engine.table.gather(slots), **batch),
            "heads": lambda: batch_logits(backbone.spec.model_type, handles, hidden, pooler, batch["attention_mask"]),
            "whole_logits": lambda: engine.logits(list(zip(handles, rows))),
        }
        times = common.interleaved(variants, args.repeats, 2)
        for name in variants:
            common.emit("engine_onnx_heads", variant=name, cpu=common.summary_ms(times["cpu"][name]))
        common.emit("engine_onnx_heads_share", heads_over_whole=common.ratio(times["cpu"], "heads", "whole_logits"))


if __name__ == "__main__":
    main()
