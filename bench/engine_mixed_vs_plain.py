"""Mixed-task batch vs the plain backbone on the same batch, plus two baselines.

Variants, all on one batch of ``--batch`` rows of exactly ``--length`` tokens, every row a
random task out of ``--tasks`` registered ones, timed interleaved in one process:

- ``encoder_plain``: the shared encoder alone: the stock modules (per-row forwards exist only
  inside ``per_row_biases``).
- ``encoder_mixed``: the same call inside ``per_row_biases`` with the batch's gathered rows: what BitFit adds.
- ``encoder_mixed_add`` (CPU) / ``encoder_mixed_accumulate`` (GPU): the same with the Linear
  form the engine does not pick on this device (``per_row.LINEAR_FORMS``).
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
from dataclasses import dataclass
from pathlib import Path

import common
import torch

from bias_store.sites import site_modules
from engine import Engine, head_batch, load_backbone, load_classifier
from engine.backbone import DTYPES
from engine.heads import cls_features
from engine.inputs import collate
from engine.per_row import per_row_biases
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
                   help="torch.compile the encoder and time only encoder_plain/encoder_mixed (does fusion remove the adds?)")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode, e.g. max-autotune-no-cudagraphs (Triton GEMM templates that can fuse the add)")
    return p.parse_args(argv)


def naive_inplace_runner(engine: Engine, items: list, tasks: dict[str, dict[str, torch.Tensor]]):
    """A server that writes each task's biases into the shared model, runs that task's rows
    alone, and restores the base biases afterwards (what BitFit's tables avoid)."""
    backbone = engine.backbone
    modules = site_modules(backbone.encoder)  # every site: the table's layout leaves out the shortcut ones
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
    model.to(device=args.device, dtype=DTYPES[args.dtype]).eval()
    names = [f"a{rng.randrange(args.adapters)}" for _ in range(args.batch)]

    def run():
        with torch.inference_mode():
            return model(**batch, adapter_names=names)

    return run


@dataclass
class Setup:
    """One mixed batch on an engine holding ``--tasks`` tasks, as every variant sees it."""

    backbone: object
    engine: Engine
    names: list[str]
    rows: list  # EncodedRow per batch row
    items: list  # (TaskHandle, EncodedRow) per batch row
    batch: dict[str, torch.Tensor]  # each [batch, length]
    slots: torch.Tensor  # [batch]
    tasks: dict[str, dict[str, torch.Tensor]]  # absolute biases of the tasks in the batch (naive baseline)
    path: str


def build(args: argparse.Namespace, rng: random.Random) -> Setup:
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
    batch = collate(rows, backbone.tokenizer.pad_token_id or 0, backbone.device)
    slots = torch.tensor([h.slot for h, _ in items], dtype=torch.long)
    return Setup(backbone, engine, names, rows, items, batch, slots, tasks, path)


def engine_variants(s: Setup, args: argparse.Namespace) -> tuple[dict, str]:
    """The encoder and logits variants (and the Linear form the engine does not pick here)."""
    backbone, engine, batch = s.backbone, s.engine, s.batch
    one_head = s.items[0][0].head
    # Compiled, the hooks are traced into the graph (one graph with rows, one without), so
    # the per-row add can fuse with its neighbours instead of costing a pass of its own.
    encoder = torch.compile(backbone.encoder, dynamic=False, mode=args.compile_mode) if args.compile else backbone.encoder

    def encoder_plain():
        with torch.inference_mode():
            return encoder(**batch)

    def encoder_mixed(form: str | None = None):
        with torch.inference_mode(), per_row_biases(engine.table.layout, engine.table.gather(s.slots), form):
            return encoder(**batch)

    other_form = "add" if backbone.device.type == "cpu" else "accumulate"

    def logits_plain():  # a single-task server: same collate, one head, logits back on the CPU
        with torch.inference_mode():
            out = backbone.encoder(**collate(s.rows, backbone.tokenizer.pad_token_id or 0, backbone.device))
            return one_head(cls_features(backbone.spec.model_type, out.last_hidden_state, out.pooler_output)).cpu()

    def logits_mixed_per_group():  # the heads one task group at a time (head_batch's other way)
        stacked_max = head_batch.STACKED_MAX_LABELS
        head_batch.STACKED_MAX_LABELS = 0
        try:
            return engine.logits(s.items)
        finally:
            head_batch.STACKED_MAX_LABELS = stacked_max

    variants = {"encoder_plain": encoder_plain, "encoder_mixed": encoder_mixed,
                f"encoder_mixed_{other_form}": lambda: encoder_mixed(other_form)}
    check_same(variants[f"encoder_mixed_{other_form}"], encoder_mixed, backbone.dtype)
    if not args.compile:
        variants["encoder_mixed_hooks"] = hooks_runner(engine, batch, s.slots)
        check_same(variants["encoder_mixed_hooks"], encoder_mixed, backbone.dtype)
        variants.update(logits_plain=logits_plain, logits_mixed=lambda: engine.logits(s.items),
                        logits_mixed_per_group=logits_mixed_per_group)
    return variants, other_form


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.setup(args.threads, args.out)
    baselines = {b for b in args.baselines.split(",") if b and b != "none"}
    if baselines - {"naive", "peft"}:
        raise SystemExit(f"unknown baselines {sorted(baselines - {'naive', 'peft'})}: choose from naive, peft, none")
    rng = random.Random(args.seed)
    s = build(args, rng)
    variants, other_form = engine_variants(s, args)
    if args.compile:
        baselines = set()
    if "naive" in baselines:
        variants["naive_inplace"] = naive_inplace_runner(s.engine, s.items, s.tasks)
        check_naive(variants["naive_inplace"], variants["logits_mixed"], s.backbone.dtype)
    if "peft" in baselines:
        variants["peft_lora_mixed"] = peft_runner(s.path, args, s.batch, rng)
    shape = dict(
        model=args.model, device=str(s.backbone.device), dtype=args.dtype, batch=args.batch, length=args.length,
        tasks=args.tasks, distinct_tasks_in_batch=len(s.tasks), compiled=args.compile and (args.compile_mode or "default"),
    )
    measure(variants, other_form, shape, args, s.backbone.device)


def measure(variants: dict, other_form: str, shape: dict, args: argparse.Namespace, device: torch.device) -> None:
    """Ops per forward, then the variants timed interleaved; one JSON line per variant and ratio."""
    common.emit("env", **common.environment(), script="engine_mixed_vs_plain")
    for name in (v for v in variants if v.startswith("encoder_")):
        common.emit("ops_per_forward", variant=name, **shape, aten_ops=common.count_ops(variants[name]))
    clocks = common.interleaved(variants, args.repeats, args.warmup, device)
    pairs = [("encoder_mixed", "encoder_plain"), (f"encoder_mixed_{other_form}", "encoder_plain")]
    if "logits_mixed" in variants:
        pairs += [("encoder_mixed_hooks", "encoder_plain"), ("logits_mixed", "logits_plain"),
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
    got, want = a().last_hidden_state.float(), b().last_hidden_state.float()
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
