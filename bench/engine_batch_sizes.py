"""The engine's rows/s by batch size, packed and padded, beside the plain ONNX Runtime loop on the same texts.

The forward has a fixed cost per call (thread wake-ups per op), so a server that runs half
batches pays for it: docs/benchmarks/request_path.md (section 5). Interleaved rounds, medians:

    .venv/bin/python -m bench.engine_batch_sizes --texts short --rounds 3 --seconds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/common.py, imported as `common` by EngineAlone

from bench.http_load import emit  # noqa: E402
from bench.http_onnx_parts import EngineAlone, add_engine_options  # noqa: E402
from bench.plain_ceiling import Ceiling, Variant, texts_of  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_engine_options(p, texts="short")
    p.add_argument("--sizes", default="8,12,16,24,32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args(argv)
    from engine import load_backbone

    backbone = load_backbone(device="cpu")
    texts = texts_of(args.texts)
    sizes = [int(s) for s in args.sizes.split(",")]
    ceiling = Ceiling(texts, backbone)
    engines = {(pack, b): EngineAlone(backbone, texts, args.tasks, args.threads, b, args.cache, pack=pack)
               for pack in (True, False) for b in sizes}
    base = Variant(threads=args.threads)
    kinds = ("engine", "engine_padded", "plain", "plain_packed")
    got: dict[tuple[str, int], list[float]] = {(k, b): [] for k in kinds for b in sizes}
    for _ in range(args.rounds):
        for b in sizes:
            got[("engine", b)].append(engines[(True, b)].measure(args.seconds))
            got[("engine_padded", b)].append(engines[(False, b)].measure(args.seconds))
            got[("plain", b)].append(ceiling.measure(dataclasses.replace(base, batch=b), args.seconds)[0])
            got[("plain_packed", b)].append(ceiling.measure(dataclasses.replace(base, batch=b, packed=True), args.seconds)[0])
    for b in sizes:
        m = {k: statistics.median(got[(k, b)]) for k in kinds}
        emit({"bench": "engine_batch_sizes", "texts": args.texts, "batch": b, **{f"{k}_rows_per_s": round(v, 1) for k, v in m.items()},
              "engine_over_plain": round(m["engine"] / m["plain"], 3), "engine_over_padded": round(m["engine"] / m["engine_padded"], 3),
              "plain_packed_over_plain": round(m["plain_packed"] / m["plain"], 3)})
    ceiling.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
