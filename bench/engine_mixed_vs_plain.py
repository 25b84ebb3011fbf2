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
  (``per_row.LINEAR_FORMS``; "fused" is the Triton per-row-bias GEMM).
- with ``--compile``: ``encoder_plain`` is ``torch.compile(encoder)`` and ``encoder_mixed``
  the engine's compiled forward (``engine.compiled``, rows as an input), same mode; on
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

Prints one JSON line per variant and per ratio.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
from collections import defaultdict
from pathlib import Path

import common
import torch

from engine import Engine, head_batch, load_backbone, load_classifier, row_bias_gemm
from engine.compiled import CompiledEncoder, torch_mode
from engine.heads import cls_features
from engine.inputs import collate
from engine.per_row import RowBiasedEncoder
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


def naive_inplace_runner(engine: Engine, items: list, tasks: dict[str, dict[str, torch.Tensor]]):
    """A server that writes each task's biases into the shared model, runs that task's rows
    alone, and restores the base biases afterwards (what BitFit's tables avoid)."""
    backbone = engine.backbone
    modules = engine.table.layout.modules  # site -> module (the one place that found them)
    base = {site: m.bias.detach().clone() for site, m in modules.items()}
    pad = backbone.tokenizer.pad_token_id or 0
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (handle, _) in enumerate(items):
        groups[handle.name].append(i)

    def run() -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(items)
        with torch.inference_mode():
            for name, idx in groups.items():
                for site, value in tasks[name].items():
                    modules[site].bias.copy_(value)
                batch = collate([items[i][1] for i in idx], pad, backbone.device)
                enc = backbone.encoder(**batch)
                features = cls_features(engine.spec.model_type, enc.last_hidden_state, enc.pooler_output)
                for i, row in zip(idx, items[idx[0]][0].head(features).cpu()):
                    out[i] = row
            for site, value in base.items():
                modules[site].bias.copy_(value)
        return out

    return run


def hooks_runner(engine: Engine, batch: dict[str, torch.Tensor], slots: torch.Tensor):
    """Every site adds its rows after the module (forward hooks), from the engine's own table.

    The hooks exist only inside the call, so the other variants never see them.
    """
    table = engine.table
    rows: list[torch.Tensor] = []

    def make_hook(start: int, stop: int):
        def add_rows(module, args, output: torch.Tensor) -> torch.Tensor:
            delta = rows[0][:, start:stop]  # [batch, dim]
            for _ in range(output.dim() - 2):
                delta = delta.unsqueeze(1)  # [batch, 1, ..., dim]
            return output.add_(delta)

        return add_rows

    def run():
        handles = [m.register_forward_hook(make_hook(*table.layout.offsets[n])) for n, m in table.layout.modules.items()]
        rows.append(table.table.index_select(0, slots.to(table.device)))  # [batch, width]
        try:
            with torch.inference_mode():
                return engine.backbone.encoder(**batch)
        finally:
            rows.clear()
            for h in handles:
                h.remove()

    return run


def peft_runner(path: str, args: argparse.Namespace, batch: dict[str, torch.Tensor], rng: random.Random):
    """PEFT's LoRA mixed-adapter batch on its own copy of the encoder."""
    from peft import LoraConfig, get_peft_model

    encoder = load_classifier(path, num_labels=2).base_model
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
    model = get_peft_model(encoder, config, adapter_name="a0")
    for i in range(1, args.adapters):
        model.add_adapter(f"a{i}", config)
    with torch.no_grad():  # lora_B starts at zero; make every adapter do real work
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.to(device=args.device, dtype=common_dtype(args.dtype)).eval()
    names = [f"a{rng.randrange(args.adapters)}" for _ in range(args.batch)]

    def run():
        with torch.inference_mode():
            return model(**batch, adapter_names=names)

    return run


def common_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    baselines = {b for b in args.baselines.split(",") if b and b != "none"}
    if baselines - {"naive", "peft"}:
        raise SystemExit(f"unknown baselines {sorted(baselines - {'naive', 'peft'})}: choose from naive, peft, none")
    rng = random.Random(args.seed)
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
    pad = backbone.tokenizer.pad_token_id or 0
    batch = collate(rows, pad, backbone.device)  # each [batch, length]
    slots = torch.tensor([h.slot for h, _ in items], dtype=torch.long)  # [batch]
    one_head = items[0][0].head

    # The same tasks without the shortcuts: every site adds per row (only the batch's tasks).
    general = Engine(backbone, capacity=len(keep), shortcuts=False)
    general_slots = {c: general.register(random_bias_set(backbone.spec, names[c], seed=args.seed + c)).slot for c in keep}
    slots_general = torch.tensor([general_slots[c] for c in chosen], dtype=torch.long)  # [batch]

    engine.encoder.linear_form = args.linear_form
    if args.compile:  # both compiled alike: plain as torch.compile(encoder), mixed as the engine does it
        inductor = args.compile_backend == "inductor"  # modes are inductor's
        compiled_plain = torch.compile(backbone.encoder, fullgraph=True, dynamic=False, backend=args.compile_backend,
                                       mode=torch_mode(args.compile_mode, backbone.device) if inductor else None)
        compiled_mixed = CompiledEncoder(engine.encoder, args.compile_mode, backbone.max_length, backend=args.compile_backend)

    def encoder_plain():
        with torch.inference_mode():
            return (compiled_plain if args.compile else backbone.encoder)(**batch).last_hidden_state

    def encoder_mixed(form: str | None = None, table_engine: Engine = engine, table_slots: torch.Tensor = slots):
        with torch.inference_mode():
            rows = table_engine.table.gather(table_slots)  # [batch, width]
            if args.compile:
                return compiled_mixed(rows=rows, **batch)[0]
            return RowBiasedEncoder(backbone.encoder, table_engine.table.layout, form or args.linear_form)(rows=rows, **batch)[0]

    # The Linear forms the engine does not pick by default on this device, timed beside it.
    other_forms = ["add"] if backbone.device.type == "cpu" else ["accumulate"] + (["fused"] if row_bias_gemm.available() else [])
    other_forms = [f for f in other_forms if f != args.linear_form]

    def logits_plain():  # a single-task server: same collate, one head, logits back on the CPU
        with torch.inference_mode():
            b = collate(rows, pad, backbone.device)
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

    variants = {"encoder_plain": encoder_plain, "encoder_mixed": encoder_mixed}
    if not args.compile:
        variants["encoder_mixed_general"] = lambda: encoder_mixed(None, general, slots_general)
        check_same(variants["encoder_mixed_general"], encoder_mixed, backbone.dtype)
    if not args.compile and not args.encoder_only:
        for form in other_forms:
            variants[f"encoder_mixed_{form}"] = lambda form=form: encoder_mixed(form)
        hooks = hooks_runner(general, batch, slots_general)  # the first design: every site, a hook
        variants["encoder_mixed_hooks"] = lambda: hooks().last_hidden_state
        for name in variants:
            if name.startswith("encoder_mixed_"):
                check_same(variants[name], encoder_mixed, backbone.dtype)
        variants.update(logits_plain=logits_plain, logits_mixed=logits_mixed, logits_mixed_per_group=logits_mixed_per_group)
    else:
        baselines = set()
    if "naive" in baselines:
        variants["naive_inplace"] = naive_inplace_runner(engine, items, tasks)
        check_naive(variants["naive_inplace"], logits_mixed, backbone.dtype)
    if "peft" in baselines:
        variants["peft_lora_mixed"] = peft_runner(path, args, batch, rng)

    shape = dict(
        model=args.model, device=str(backbone.device), dtype=args.dtype, batch=args.batch, length=args.length,
        tasks=args.tasks, distinct_tasks_in_batch=len(keep), compiled=args.compile and args.compile_mode,
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


def check_same(a, b, dtype: torch.dtype) -> None:
    """Two encoder variants must compute the same hidden states, or the comparison is void."""
    got, want = a().float(), b().float()  # last hidden states
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    if not torch.allclose(got, want, atol=tol, rtol=tol):
        raise AssertionError(f"encoder variants disagree: max |diff| {(got - want).abs().max():.3g}")


def check_naive(naive, mixed, dtype: torch.dtype) -> None:
    """The baseline must compute the same logits as the engine, or it measures nothing."""
    got, want = torch.stack(naive()), torch.stack(mixed())
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    if not torch.allclose(got, want, atol=tol, rtol=tol):
        raise AssertionError(f"naive in-place baseline disagrees with the engine: max |diff| {(got - want).abs().max():.3g}")


if __name__ == "__main__":
    main()
