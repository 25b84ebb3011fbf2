"""The engine on a CUDA GPU: mixed batches equal each task's standalone model; hot swap.

Every test here is marked ``cuda`` and skipped without a GPU (see conftest.py). The
checks live in plain functions taking a device, so a CPU dry run can exercise the same
code: ``python -c "from tests.engine.test_cuda import check_equivalence as c; c(...)"``.

Tolerances, and why:
- fp32: the engine and the reference run the same fp32 arithmetic (TF32 is off by
  default for matmuls), only batched and padded differently; 1e-5 absolute, as on the CPU,
  with a small relative term for the different GEMM tilings of the two batch shapes.
- fp16 / bf16: the engine's encoder and its bias table are half precision, the
  reference is fp32. Each rounding costs up to 2^-11 (fp16) or 2^-8 (bf16) relative,
  and a tiny 2-layer encoder chains a few dozen of them, so the logits' relative error
  (||got - want|| / ||want||) is bounded at 1e-2 for fp16 and 5e-2 for bf16 (about
  10 and 6 units of each format's epsilon). Emulated on the CPU (encoder cast to half),
  the worst row of this test measured 2.6e-3 (fp16) and 2.0e-2 (bf16). So that these
  loose bounds still prove something, each test also checks that another task's
  reference is far off (median over rows > 10x the bound; it measured ~1.35): a wrong
  bias row or head cannot pass.
"""

from __future__ import annotations

import random

import pytest
import torch

from bias_store import validate
from engine import Engine, load_backbone
from tests.helpers import random_bias_set, reference_logits

pytestmark = pytest.mark.cuda

TEXTS = [
    "a gorgeous, witty film",
    "dull and far too long",
    "the plot twists kept me guessing until the very last scene of the movie",
    "meh",
    ("is it good?", "yes, it is very good"),
]
REL_TOL = {"float16": 1e-2, "bfloat16": 5e-2}


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def mixed_setup(base_dir, device: str, dtype: str, tasks: int = 12, rows: int = 40, seed: int = 0,
                linear_form: str | None = None, compile_mode: str = "off"):
    """An engine with ``tasks`` random tasks and a mixed batch of ``rows`` (task, text) items."""
    backbone = load_backbone(str(base_dir), device=device, dtype=dtype)
    engine = Engine(backbone, compile_mode=compile_mode)
    eager = engine.runner.encoder if compile_mode != "off" else engine.runner  # the RowBiasedEncoder
    eager.linear_form = linear_form
    sets = {}
    for i in range(tasks):
        labels = [f"l{j}" for j in range(2 + i % 3)]
        inputs = "text_pair" if i % 6 == 5 else "text"
        bs = random_bias_set(backbone.spec, f"task-{i}", labels, seed=seed + i, pooling="mean" if i % 4 == 0 else "cls",
                             subset="query_intermediate" if i % 5 == 1 else "all", inputs=inputs)
        validate(bs, backbone.spec)
        engine.register(bs)
        sets[bs.meta.task] = bs
    rng = random.Random(seed)
    items = []
    for _ in range(rows):
        name = f"task-{rng.randrange(tasks)}"
        pair = sets[name].meta.inputs == "text_pair"
        items.append((name, TEXTS[-1] if pair else rng.choice(TEXTS[:-1])))
    return engine, sets, items


def engine_logits(engine: Engine, items: list) -> list[torch.Tensor]:
    rows = [(engine.get(n), engine.encode(engine.get(n), [t])[0]) for n, t in items]
    return engine.logits(rows)


def check_equivalence(base_dir, device: str = "cuda", dtype: str = "float32", linear_form: str | None = None,
                      compile_mode: str = "off") -> None:
    engine, sets, items = mixed_setup(base_dir, device, dtype, linear_form=linear_form, compile_mode=compile_mode)
    got = engine_logits(engine, items)
    want = {(n, t): reference_logits(base_dir, sets[n], [t], device=device)[0] for n, t in set(items)}
    wrong_errs = []
    for (name, text), logits in zip(items, got):
        ref = want[(name, text)]
        if dtype == "float32":
            torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
            continue
        err = rel_err(logits, ref)
        assert err <= REL_TOL[dtype], f"{name} {text!r}: relative error {err:.2e} > {REL_TOL[dtype]:.0e} in {dtype}"
        # The bound must be able to fail: another task with as many labels is far off.
        other = next(n for n in sets if n != name and len(sets[n].meta.labels) == len(sets[name].meta.labels)
                     and sets[n].meta.inputs == sets[name].meta.inputs)
        wrong_errs.append(rel_err(logits, reference_logits(base_dir, sets[other], [text], device=device)[0]))
    if wrong_errs:
        wrong_errs.sort()
        median = wrong_errs[len(wrong_errs) // 2]
        assert median > 10 * REL_TOL[dtype], f"{dtype} tolerance cannot tell tasks apart (median {median:.2e})"


def check_hot_swap(base_dir, device: str = "cuda", dtype: str = "float32") -> None:
    """Replace and delete tasks between identical batches: every other row is bit-identical."""
    engine, sets, items = mixed_setup(base_dir, device, dtype, tasks=6, rows=24, seed=100)
    before = engine_logits(engine, items)
    pinned = engine.acquire("task-2")  # a request already queued for the old version
    pinned_row = engine.encode(pinned, [TEXTS[0]])[0]
    old_pinned = engine.logits([(pinned, pinned_row)])[0]

    new = random_bias_set(engine.spec, "task-2", list(sets["task-2"].meta.labels), seed=999,
                          pooling=sets["task-2"].meta.pooling, inputs=sets["task-2"].meta.inputs)
    handle = engine.register(new, version=2)
    assert handle.version == 2 and handle.slot != pinned.slot
    after = engine_logits(engine, items)
    for (name, _), a, b in zip(items, before, after):
        if name != "task-2":
            assert torch.equal(a, b), f"{name} changed when task-2 was replaced"
        else:
            assert not torch.allclose(a, b), "task-2 still computes its old version"
    new_ref = reference_logits(base_dir, new, [TEXTS[0]], device=device)[0]
    swapped = engine_logits(engine, [("task-2", TEXTS[0])])[0]
    tol = 1e-5 if dtype == "float32" else REL_TOL[dtype]
    assert rel_err(swapped, new_ref) <= max(tol, 1e-5)
    # The pinned handle still computes the old version, bit for bit, until released.
    assert torch.equal(engine.logits([(pinned, pinned_row)])[0], old_pinned)
    engine.release(pinned)

    others = [(n, t) for n, t in items if n != "task-4"]
    kept = engine_logits(engine, others)
    engine.unregister("task-4")
    for (name, _), a, b in zip(others, kept, engine_logits(engine, others)):
        assert torch.equal(a, b), f"{name} changed when task-4 was deleted"


def test_mixed_batch_matches_standalone_fp32_on_cuda(tiny_bert_dir):
    check_equivalence(tiny_bert_dir, "cuda", "float32")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_batch_matches_standalone_half_on_cuda(tiny_bert_dir, dtype):
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    check_equivalence(tiny_bert_dir, "cuda", dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_fused_row_bias_gemm_matches_standalone_on_cuda(tiny_bert_dir, dtype):
    pytest.importorskip("triton")
    check_equivalence(tiny_bert_dir, "cuda", dtype, linear_form="fused")


@pytest.mark.parametrize("linear_form", ["add", "fused"])
def test_compiled_with_cuda_graphs_matches_standalone_on_cuda(tiny_bert_dir, linear_form):
    if linear_form == "fused":
        pytest.importorskip("triton")
    check_equivalence(tiny_bert_dir, "cuda", "float32", linear_form=linear_form, compile_mode="default")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_hot_swap_on_cuda(tiny_bert_dir, dtype):
    check_hot_swap(tiny_bert_dir, "cuda", dtype)


def test_backbone_is_on_the_gpu_and_never_written(tiny_bert_dir):
    backbone = load_backbone(str(tiny_bert_dir), device="cuda", dtype="float16")
    assert all(p.device.type == "cuda" and p.dtype == torch.float16 for p in backbone.encoder.parameters())
    before = {k: v.clone() for k, v in backbone.encoder.state_dict().items()}
    engine = Engine(backbone)
    assert engine.table.table.device.type == "cuda" and engine.table.dtype == torch.float16
    for i in range(20):  # forces the table to grow on the device
        engine.register(random_bias_set(backbone.spec, f"g{i}", seed=i))
    engine.predict("g3", ["hello there"])
    assert all(torch.equal(before[k], v) for k, v in backbone.encoder.state_dict().items())
