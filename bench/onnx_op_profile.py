"""Where the engine's packed graph spends its time against the plain packed graph, op type by op type.

Both graphs run the same packed batches (the engine's with each row's task biases, 100
random tasks; the plain one is the stock encoder of the ceiling, bench/plain_ceiling.py),
alternately, each going first every other batch (the first run after the Python work pays
more for waking ONNX Runtime's threads), under ONNX Runtime's profiler (2 intra-op threads,
no spinning). Prints one JSON line per graph: kernel milliseconds per run in total, per op
type, and MatMul by input width (a weight's output width is not in the profile; two
activations' is), so that "the per-row biases cost X" is a measured split, not a guess:

    .venv/bin/python -m bench.onnx_op_profile --texts wrk --batch 16 --runs 60
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # bench/common.py, imported as `common`

from bench.http_load import emit  # noqa: E402
from bench.http_onnx_parts import add_engine_options  # noqa: E402
from bench.plain_ceiling import Ceiling, Variant, texts_of  # noqa: E402
from bench.plain_graphs import session  # noqa: E402


def op_times(profile: Path, runs: int) -> dict:
    """Kernel ms per run: total, by op type (with nodes per run), MatMul by input shape."""
    by_op, nodes, matmul = collections.Counter(), collections.Counter(), collections.Counter()
    for event in json.loads(profile.read_text()):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        by_op[op] += event["dur"]
        nodes[op] += 1
        if op == "MatMul":
            shapes = [next(iter(s.values())) for s in event["args"].get("input_type_shape", [])]
            matmul[f"{shapes[0][-1]} in" + ("" if len(shapes) < 2 else f", {shapes[1][-1]} out")] += event["dur"]
    ms = lambda us: round(us / runs / 1000, 3)  # noqa: E731
    return {"kernel_ms_per_run": ms(sum(by_op.values())),
            "ops": {op: {"ms": ms(us), "nodes": nodes[op] // runs} for op, us in by_op.most_common()},
            "matmul_by_width": {k: ms(us) for k, us in matmul.most_common()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_engine_options(p, texts="wrk")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--runs", type=int, default=60)
    args = p.parse_args(argv)
    import common

    from engine import Engine, load_backbone
    from engine.packing import pack
    from engine.runners.onnx_export import cached_graph
    from engine.runners.ort import OnnxOptions

    backbone = load_backbone(device="cpu")
    options = OnnxOptions(args.cache, threads=args.threads, pack=True)
    engine = Engine(backbone, onnx=options)
    if not engine.packs:
        raise SystemExit("this backbone's graph does not pack; nothing to compare")
    handles = common.register_random_tasks(engine, args.tasks, seed=0)
    texts, rng = texts_of(args.texts), random.Random(0)
    ceiling = Ceiling(texts, backbone)
    plain = ceiling.loop(Variant(threads=args.threads, batch=args.batch, packed=True))
    out = Path(tempfile.mkdtemp(prefix="bitfit-op-profile-"))
    graphs = {"engine": cached_graph(backbone, engine.table.layout, options.cache_dir, "none", True),
              "plain": ceiling.graph("legacy", False, True)}
    sessions = {name: session(path, args.threads, False, str(out / name)) for name, path in graphs.items()}
    names = [i.name for i in sessions["plain"].get_inputs()]
    for run in range(args.runs):
        chunk = [texts[(run * args.batch + k) % len(texts)] for k in range(args.batch)]
        items = [(h, engine.encode(h, [t])[0]) for h, t in ((handles[rng.randrange(len(handles))], t) for t in chunk)]
        _, batch, rows = engine.prepare(items).groups[0]
        feeds = {"engine": engine.runner.feeds(rows, **batch)[0]}
        tokens = plain.tokenize(chunk)
        same = pack(tokens["input_ids"], tokens["attention_mask"], tokens["token_type_ids"])
        feeds["plain"] = {n: same.feeds[n] for n in names}
        for name in ("engine", "plain") if run % 2 == 0 else ("plain", "engine"):  # either may pay for going first
            sessions[name].run(None, feeds[name])
    for name, sess in sessions.items():
        emit({"bench": "onnx_op_profile", "graph": name, "texts": args.texts, "batch": args.batch, "runs": args.runs,
              "threads": args.threads, **op_times(Path(sess.end_profiling()), args.runs)})
    ceiling.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
