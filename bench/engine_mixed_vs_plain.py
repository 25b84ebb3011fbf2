"""Mixed-task batch vs the plain backbone on the same batch, plus two baselines.

Variants, all on one batch of ``--batch`` rows of exactly ``--length`` tokens, every row a
random task out of ``--tasks`` registered ones, timed interleaved in one process:

- ``encoder_plain``: the shared encoder alone: the stock modules (per-row forwards exist only
  inside ``rows()``).
- ``encoder_mixed``: the same call inside ``engine.table.rows(slots)``: what BitFit adds,
  with the exact shortcuts (``engine.shortcuts``: no per-row key or value add).
- ``encoder_mixed_general``: the same without the shortcuts (every site adds per row).
- ``encoder_mixed_add`` (CPU) / ``encoder_mixed_accumulate`` and ``encoder_mixed_fused``
  (GPU): the same with the Linear forms the engine does not pick by default on this device
  (``runners.pytorch.LINEAR_FORMS``; "fused" is the Triton per-row-bias GEMM).
- with ``--compile``: ``encoder_plain`` is ``torch.compile(encoder)`` and ``encoder_mixed``
  the engine's compiled forward (``engine.runners.compiled``, rows as an input), same mode; on
  CUDA both replay CUDA graphs.
- ``encoder_mixed_hooks``: the engine's first design, for comparison: every site (Linear
  ones included) adds its rows to the module's output in a forward hook, one extra pass
  over each output.
- ``logits_plain``: collate + encoder + one task's head, i.e. a single-task server.
- ``logits_mixed``: ``Engine.logits`` on the mixed batch (``head_batch``: one GEMM over the
  batch's heads); ``logits_mixed_per_group``: the same with the heads run per task group.
- ``naive_inplace``: what a naive server does: group the batch by task, copy each task's
  biases into the model, run its rows, then restore the base biases.
- ``peft_lora_mixed``: PEFT LoRA (r=8 on query/value) with ``--adapters`` adapters and
  ``adapter_names=`` (one random adapter per row), on a separate copy of the encoder.

Prints one JSON line per variant and per ratio. The baselines and the checks that they
compute what the engine computes are in ``mixed_baselines.py``.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import common
import torch
from mixed_baselines import check_naive, check_same, hooks_runner, naive_inplace_runner, peft_runner

from engine import Engine, head_batch, load_backbone
from engine.backbone import Backbone
from engine.heads import cls_features
from engine.inputs import EncodedRow, collate
from engine.runners import row_bias_gemm
from engine.runners.compiled import CompiledEncoder, torch_mode
from engine.runners.pytorch import RowBiasedEncoder
from tests.helpers import random_bias_set

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=common.MODELS, default="minilm")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--adapters", type=int, default=32, help="LoRA adapters for the PEFT baseline")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--baselines", default="naive,peft", help="comma list of naive,peft; 'none' for none")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where random backbones are saved (reused across runs)")
    p.add_argument("--compile", action="store_true",
                   help="compile plain and mixed forwards alike; time only encoder_plain/encoder_mixed")
    p.add_argument("--compile-mode", default="default", choices=["default", "max-autotune"],
                   help="the engine's --compile setting (on CUDA both capture CUDA graphs)")
    p.add_argument("--encoder-only", action="store_true",
                   help="time only encoder_plain, encoder_mixed and encoder_mixed_general (a busy box: fewer variants)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend; a CPU dry run uses aot_eager (no code generation, seconds)")
    p.add_argument("--linear-form", default=None, choices=["accumulate", "add", "fused"],
                   help="how the engine's Linear sites add per-row biases (default: the device's)")
    return p.parse_args(argv)


@dataclass
class MixedBatch:
    """One batch of random tasks on the engine, and the same tasks on an engine without shortcuts."""

    path: str  # the backbone's folder (the PEFT baseline loads its own copy)
    backbone: Backbone
    engine: Engine
    general: Engine  # the batch's tasks without the shortcuts: every site adds per row
    rows: list[EncodedRow]
    items: list  # (task handle, row) per row
    batch: dict[str, torch.Tensor]  # each [batch, length]
    slots: torch.Tensor  # [batch], the rows' slots in ``engine``
    slots_general: torch.Tensor  # [batch], the same tasks' slots in ``general``
    tasks: dict[str, dict[str, torch.Tensor]]  # site -> absolute bias, for the batch's tasks only (naive baseline)


def prepare(args: argparse.Namespace, rng: random.Random) -> MixedBatch:
    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="bench-mixed-"))
    path = common.backbone_dir(args.model, tmp)
    backbone = load_backbone(path, device=args.device, dtype=args.dtype)
    engine = Engine(backbone, capacity=args.tasks + 1)

    # Register the tasks; keep absolute biases only for the tasks the batch uses (naive baseline).
    names = [f"task-{i}" for i in range(args.tasks)]
    chosen = [rng.randrange(args.tasks) for _ in range(args.batch)]
    keep = set(chosen)
    tasks: dict[str, dict[str, torch.Tensor]] = {}
    for i, name in enumerate(names):
        bias_set = random_bias_set(backbone.spec, name, seed=args.seed + i)
        engine.register(bias_set)
        if i in keep:
            tasks[name] = {
                site: v.to(backbone.device, backbone.dtype) for site, v in backbone.spec.site_biases(bias_set.tensors).items()
            }

    rows = common.synthetic_rows(backbone.tokenizer.vocab_size, args.batch, args.length, seed=args.seed)
    items = [(engine.get(names[c]), row) for c, row in zip(chosen, rows)]
    batch = collate(rows, backbone.tokenizer.pad_token_id or 0, backbone.device)  # each [batch, length]
    slots = torch.tensor([h.slot for h, _ in items], dtype=torch.long)  # [batch]

    # The same tasks without the shortcuts: every site adds per row (only the batch's tasks).
    general = Engine(backbone, capacity=len(keep), shortcuts=False)
    general_slots = {c: general.register(random_bias_set(backbone.spec, names[c], seed=args.seed + c)).slot for c in keep}
    slots_general = torch.tensor([general_slots[c] for c in chosen], dtype=torch.long)  # [batch]
    return MixedBatch(path, backbone, engine, general, rows, items, batch, slots, slots_general, tasks)


def encoder_variants(args: argparse.Namespace, m: MixedBatch) -> dict[str, Callable]:
    """The encoder alone, plain and mixed (and, uncompiled, the other ways to add the rows)."""
    backbone, engine, batch = m.backbone, m.engine, m.batch
    engine.runner.linear_form = args.linear_form
    if args.compile:  # both compiled alike: plain as torch.compile(encoder), mixed as the engine does it
        inductor = args.compile_backend == "inductor"  # modes are inductor's
        compiled_plain = torch.compile(backbone.encoder, fullgraph=True, dynamic=False, backend=args.compile_backend,
                                       mode=torch_mode(args.compile_mode, backbone.device) if inductor else None)
        compiled_mixed = CompiledEncoder(engine.runner, args.compile_mode, backbone.max_length, backend=args.compile_backend)

    def encoder_plain():
        with torch.inference_mode():
            return (compiled_plain if args.compile else backbone.encoder)(**batch).last_hidden_state

    def encoder_mixed(form: str | None = None, table_engine: Engine = engine, table_slots: torch.Tensor = m.slots):
        with torch.inference_mode():
            rows = table_engine.table.gather(table_slots)  # [batch, width]
            if args.compile:
                return compiled_mixed(rows=rows, **batch)[0]
            return RowBiasedEncoder(backbone.encoder, table_engine.table.layout, form or args.linear_form)(rows=rows, **batch)[0]

    # The Linear forms the engine does not pick by default on this device, timed beside it.
    other_forms = ["add"] if backbone.device.type == "cpu" else ["accumulate"] + (["fused"] if row_bias_gemm.is_triton_available() else [])
    other_forms = [f for f in other_forms if f != args.linear_form]

    variants = {"encoder_plain": encoder_plain, "encoder_mixed": encoder_mixed}
    if not args.compile:
        variants["encoder_mixed_general"] = lambda: encoder_mixed(None, m.general, m.slots_general)
        check_same(variants["encoder_mixed_general"], encoder_mixed, backbone.dtype)
    if not args.compile and not args.encoder_only:
        for form in other_forms:
            variants[f"encoder_mixed_{form}"] = lambda form=form: encoder_mixed(form)
        hooks = hooks_runner(m.general, batch, m.slots_general)  # the first design: every site, a hook
        variants["encoder_mixed_hooks"] = lambda: hooks().last_hidden_state
        for name in variants:
            if name.startswith("encoder_mixed_"):
                check_same(variants[name], encoder_mixed, backbone.dtype)
    return variants


def logits_variants(m: MixedBatch) -> dict[str, Callable]:
    """Encoder and heads: a single-task server, and the engine's two ways to run the batch's heads."""
    backbone, engine, items = m.backbone, m.engine, m.items
    one_head = items[0][0].head

    def logits_plain():  # a single-task server: same collate, one head, logits back on the CPU
        with torch.inference_mode():
            b = collate(m.rows, backbone.tokenizer.pad_token_id or 0, backbone.device)
            out = backbone.encoder(**b)
            return one_head(cls_features(backbone.spec.model_type, out.last_hidden_state, out.pooler_output)).cpu()

    def logits_mixed():
        return engine.logits(items)

    def logits_mixed_per_group():  # the heads one task group at a time (head_batch's other way)
        stacked_max = head_batch.STACKED_MAX_LABELS
        head_batch.STACKED_MAX_LABELS = 0
        try:
            return engine.logits(items)
        finally:
            head_batch.STACKED_MAX_LABELS = stacked_max

    return {"logits_plain": logits_plain, "logits_mixed": logits_mixed, "logits_mixed_per_group": logits_mixed_per_group}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    baselines = {b for b in args.baselines.split(",") if b and b != "none"}
    if baselines - {"naive", "peft"}:
        raise SystemExit(f"unknown baselines {sorted(baselines - {'naive', 'peft'})}: choose from naive, peft, none")
    rng = random.Random(args.seed)
    m = prepare(args, rng)
    variants = encoder_variants(args, m)
    if not args.compile and not args.encoder_only:
        variants.update(logits_variants(m))
    else:
        baselines = set()
    if "naive" in baselines:
        variants["naive_inplace"] = naive_inplace_runner(m.engine, m.items, m.tasks)
        check_naive(variants["naive_inplace"], variants["logits_mixed"], m.backbone.dtype)
    if "peft" in baselines:
        variants["peft_lora_mixed"] = peft_runner(m.path, args, m.batch, rng)
    report(args, m, variants)


def report(args: argparse.Namespace, m: MixedBatch, variants: dict[str, Callable]) -> None:
    """Time the variants interleaved; one JSON line per variant and per ratio, for each clock."""
    backbone = m.backbone
    shape = dict(
        model=args.model, device=str(backbone.device), dtype=args.dtype, batch=args.batch, length=args.length,
        tasks=args.tasks, distinct_tasks_in_batch=len(m.tasks), compiled=args.compile and args.compile_mode,
        linear_form=args.linear_form or "device default",
    )
    common.emit("env", **common.environment(), script="engine_mixed_vs_plain")
    for name in (v for v in variants if v.startswith("encoder_") and not args.compile):  # dispatch modes break compiled code
        common.emit("ops_per_forward", variant=name, **shape, aten_ops=common.count_ops(variants[name]))
    clocks = common.interleaved(variants, args.repeats, args.warmup, backbone.device)
    pairs = [(name, "encoder_plain") for name in variants if name.startswith("encoder_mixed")]
    if "logits_mixed" in variants:
        pairs += [("logits_mixed", "logits_plain"),
                  ("logits_mixed", "encoder_mixed"), ("logits_mixed", "logits_mixed_per_group")]
    if "naive_inplace" in variants:
        pairs.append(("naive_inplace", "logits_plain"))
    if "peft_lora_mixed" in variants:
        pairs.append(("peft_lora_mixed", "encoder_plain"))
    for clock, times in clocks.items():  # "wall", and on the CPU also "cpu" (process CPU time)
        for name, values in times.items():
            common.emit("mixed_vs_plain", variant=name, clock=clock, **shape, threads=torch.get_num_threads(),
                        **common.summary_ms(values))
        for num, den in pairs:
            common.emit("mixed_vs_plain_ratio", ratio=f"{num}/{den}", clock=clock, **shape,
                        threads=torch.get_num_threads(), **common.ratio(times, num, den))


if __name__ == "__main__":
    main()
