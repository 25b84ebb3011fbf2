"""The baselines bench/engine_mixed_vs_plain.py times beside the engine, and the checks that
each computes what the engine computes (a baseline that answers differently measures nothing).

- ``naive_inplace_runner``: a server that writes each task's biases into the shared model.
- ``hooks_runner``: the engine's first design, every site adding its rows in a forward hook.
- ``peft_runner``: PEFT LoRA with one adapter per row (``adapter_names=``).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

import torch

from bias_store.sites import site_modules
from engine import Engine, load_classifier
from engine.heads import cls_features
from engine.inputs import collate


def naive_inplace_runner(engine: Engine, items: list, tasks: dict[str, dict[str, torch.Tensor]]):
    """A server that writes each task's biases into the shared model, runs that task's rows
    alone, and restores the base biases afterwards (what BitFit's tables avoid)."""
    backbone = engine.backbone
    # Every site of the model (the table's layout leaves out the ones its exact shortcuts drop;
    # a naive server writes them all).
    modules = site_modules(backbone.encoder)
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
