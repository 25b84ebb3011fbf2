"""The honest ceiling: the fastest plain single-model ONNX Runtime loop this box runs on given texts.

A single-model server's whole step, in one thread of Python: tokenize a batch of texts,
run the stock encoder (no per-row inputs), mean-pool, one head, logits to numpy. Every
knob that could make that loop faster is a variant, timed interleaved round by round:

- ``exporter``: ``legacy`` (``torch.onnx.export(..., dynamo=False)``, opset 17) or
  ``dynamo`` (the exporter the server uses, opset 18);
- ``fused``: the graph after ``onnxruntime.transformers``' BERT optimizer (Attention,
  SkipLayerNormalization, BiasGelu);
- ``spin``: ``session.intra_op.allow_spinning`` on or off;
- ``threads``: intra-op threads (1 or 2 on this box);
- ``batch``: rows per step (32 or 64);
- ``tokenizer``: ``raw`` (``tokenizers.Tokenizer.encode_batch``, padding in Rust) or ``hf``
  (``transformers``' ``__call__`` with ``padding=True``, what ``bench/engine_onnx.py`` ran);
- ``packed``: the batch's rows packed several to a sequence (``engine.packing``, as the
  server's graph runs them) instead of padded to the longest; the graph then takes a
  block attention mask and per-row positions.

``search`` times the base variant and each one-knob change from it, then the combination
of every change that won, and returns the rows/s of each: the best is the ceiling.
``Ceiling.measure(..., loops=N)`` runs one variant in N threads at once over one session:
not a single loop, so not the ceiling, but what a plain server running a forward per core
at once would do (the plain counterpart of ``BITFIT_INFERENCE_WORKERS``).
Run alone::

    python -m bench.plain_ceiling --texts short --rounds 3 --seconds 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.plain_graphs import TOKEN_INPUTS, export, fuse, session  # noqa: E402

# The texts of the wrk check (bench/wrk_predict.lua draws one at random per request).
WRK_TEXTS = ["a gorgeous, witty film", "a dull and lifeless mess", "not bad at all",
             "the cast is wonderful but the script is thin", "I walked out halfway"]


@dataclass(frozen=True)
class Variant:
    exporter: str = "legacy"
    fused: bool = False
    spin: bool = False
    threads: int = 2
    batch: int = 32
    tokenizer: str = "raw"
    packed: bool = False

    @property
    def name(self) -> str:
        exporter = "legacy" if self.packed else self.exporter  # a packed graph comes from the TorchScript exporter
        return (f"{exporter}{'_fused' if self.fused else ''}_t{self.threads}_{'spin' if self.spin else 'nospin'}"
                f"_b{self.batch}_{self.tokenizer}{'_packed' if self.packed else ''}")


def texts_of(kind: str, n: int = 4096, seed: int = 0) -> list[str]:
    """``short``: bench.http_load.short_texts(); ``wrk``: the wrk check's five texts drawn at random."""
    if kind == "short":
        from bench.http_load import short_texts

        return short_texts()
    rng = random.Random(seed)
    return [rng.choice(WRK_TEXTS) for _ in range(n)]


class PlainLoop:
    """One step: tokenize ``texts``, the encoder, mean pooling, one head (numpy) -> logits."""

    def __init__(self, sess, backbone, kind: str, head: tuple[np.ndarray, np.ndarray]) -> None:
        from tokenizers import Tokenizer

        self.session, self.kind, self.head = sess, kind, head
        self.names = [i.name for i in sess.get_inputs()]
        self.hf, self.max_length = backbone.tokenizer, backbone.max_length
        self.raw = Tokenizer.from_str(backbone.tokenizer.backend_tokenizer.to_str())
        self.raw.enable_truncation(self.max_length)
        self.raw.enable_padding(pad_id=backbone.tokenizer.pad_token_id, pad_token=backbone.tokenizer.pad_token)

    def tokenize(self, texts: list[str]) -> dict[str, np.ndarray]:
        if self.kind == "hf":
            enc = self.hf(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
            return {n: enc[n].astype(np.int64) for n in TOKEN_INPUTS}
        encs = self.raw.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encs], dtype=np.int64)}

    def __call__(self, texts: list[str]) -> np.ndarray:
        feeds = self.tokenize(texts)
        if "position_ids" in self.names:  # a packed graph: pack the padded rows, lay the states out padded again
            from engine.packing import pack, unpack

            packed = pack(feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"])
            hidden = unpack(self.session.run(None, {n: packed.feeds[n] for n in self.names})[0], packed)
        else:
            hidden = self.session.run(None, {n: feeds[n] for n in self.names})[0]
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return pooled @ self.head[0].T + self.head[1]


class Ceiling:
    """The graphs (exported once each), a loop per variant, and the timing of one."""

    def __init__(self, texts: list[str], backbone=None) -> None:
        from engine import load_backbone

        self.texts = texts
        self.backbone = backbone or load_backbone(device="cpu")
        self.tmp = Path(tempfile.mkdtemp(prefix="bitfit-ceiling-"))
        rng = np.random.default_rng(0)
        hidden = self.backbone.spec.hidden_size
        self.head = (rng.standard_normal((2, hidden)).astype(np.float32), np.zeros(2, np.float32))
        self._graphs: dict[tuple[str, bool, bool], Path] = {}
        self._loops: dict[Variant, PlainLoop] = {}
        self._extra: dict[Variant, list[PlainLoop]] = {}  # more loops over the same sessions (measure's loops)

    def graph(self, exporter: str, fused: bool, packed: bool = False) -> Path:
        key = (exporter, fused, packed)
        if key not in self._graphs:
            path = self.tmp / f"{exporter}{'_fused' if fused else ''}{'_packed' if packed else ''}.onnx"
            if fused:
                fuse(self.graph(exporter, False, packed), path, self.backbone)
            else:
                export(self.backbone, path, exporter, packed)
            self._graphs[key] = path
        return self._graphs[key]

    def loop(self, v: Variant) -> PlainLoop:
        if v not in self._loops:
            sess = session(self.graph(v.exporter, v.fused, v.packed), v.threads, v.spin)
            self._loops[v] = PlainLoop(sess, self.backbone, v.tokenizer, self.head)
            self._loops[v](self.texts[: v.batch])  # warm
        return self._loops[v]

    def measure(self, v: Variant, seconds: float, loops: int = 1) -> tuple[float, float]:
        """(rows/s wall, ms of this process's CPU per row) over ``seconds`` of consecutive batches.
        ``loops`` > 1: that many threads run ``v``'s loop at once over one shared session (ONNX
        Runtime runs concurrent calls; the GIL is released in ``run`` and in the tokenizer): the
        plain counterpart of a server running forwards at once (BITFIT_INFERENCE_WORKERS)."""
        runs = self.loops(v, loops)
        n, rows = len(self.texts), [0] * loops
        t0, c0 = time.perf_counter(), time.process_time()
        stop = t0 + seconds

        def go(j: int) -> None:
            i = j * 997
            while time.perf_counter() < stop:
                runs[j]([self.texts[(i + k) % n] for k in range(v.batch)])
                rows[j], i = rows[j] + v.batch, i + v.batch

        if loops == 1:
            go(0)
        else:
            threads = [threading.Thread(target=go, args=(j,)) for j in range(loops)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return sum(rows) / wall, 1000 * cpu / max(1, sum(rows))

    def loops(self, v: Variant, count: int) -> list[PlainLoop]:
        """``count`` loops of ``v`` over its one session (each its own tokenizer), made once."""
        first = self.loop(v)
        extra = self._extra.setdefault(v, [])
        while len(extra) < count - 1:
            extra.append(PlainLoop(first.session, self.backbone, v.tokenizer, self.head))
        return [first, *extra[: count - 1]]

    def close(self) -> None:
        import shutil

        self._loops.clear()
        self._extra.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def one_knob_variants(base: Variant, threads: tuple[int, ...]) -> list[Variant]:
    flips = [replace(base, exporter="dynamo" if base.exporter == "legacy" else "legacy"), replace(base, fused=not base.fused),
             replace(base, spin=not base.spin), replace(base, batch=64 if base.batch == 32 else 32),
             replace(base, tokenizer="hf" if base.tokenizer == "raw" else "raw"), replace(base, packed=not base.packed)]
    flips += [replace(base, threads=t) for t in threads if t != base.threads]
    return [base, *flips]


def interleave(ceiling: Ceiling, variants: list[Variant], rounds: int, seconds: float) -> dict[Variant, float]:
    """Median rows/s of each variant over ``rounds`` rounds, the order rotating each round."""
    got: dict[Variant, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            got[v].append(ceiling.measure(v, seconds)[0])
    return {v: statistics.median(x) for v, x in got.items()}


def search(ceiling: Ceiling, rounds: int, seconds: float, threads: tuple[int, ...] = (1, 2)) -> tuple[dict, dict]:
    """Stage 1: the base and every one-knob change from it. Stage 2: the stage's best and
    the base with every winning change at once, timed against each other. Returns both
    stages' median rows/s; the ceiling is stage 2's best."""
    base = Variant()
    first = interleave(ceiling, one_knob_variants(base, threads), rounds, seconds)
    combined = base
    for v, rate in first.items():
        if v != base and rate > first[base]:
            combined = replace(combined, **{f: getattr(v, f) for f in v.__dataclass_fields__ if getattr(v, f) != getattr(base, f)})
    finalists = list(dict.fromkeys([max(first, key=first.get), combined]))
    return first, interleave(ceiling, finalists, rounds, seconds)


def main(argv: list[str] | None = None) -> int:
    from bench.http_load import emit

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", choices=["short", "wrk"], default="short")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    ceiling = Ceiling(texts_of(args.texts))
    try:
        first, second = search(ceiling, args.rounds, args.seconds)
    finally:
        ceiling.close()
    for stage, rates in (("one_knob", first), ("finalists", second)):
        for v, rate in sorted(rates.items(), key=lambda kv: -kv[1]):
            emit({"bench": "plain_ceiling", "texts": args.texts, "stage": stage, "variant": v.name, "rows_per_s": round(rate, 1)})
    best = max(second, key=second.get)
    emit({"bench": "plain_ceiling", "texts": args.texts, "best": best.name, "rows_per_s": round(second[best], 1), "shared_box": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
