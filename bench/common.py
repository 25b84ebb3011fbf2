"""Shared benchmark helpers: set-up, interleaved timing, summaries, one JSON line per figure.

Every bench script times its variants *interleaved* (A, B, A, B, ...) in one process, so
that load from other processes on a shared machine hits all variants alike, and reports
ratios measured side by side rather than figures from separate runs.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

# Let `python bench/x.py` import the project without installing it.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.inputs import EncodedRow  # noqa: E402

log = logging.getLogger(__name__)

_OUT_FILE: Path | None = None  # JSON lines are appended here too, when set


def setup(threads: int | None = None, out: str | None = None) -> None:
    """Configure logging, the CPU thread count and the optional JSON-lines file, once per script."""
    global _OUT_FILE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers/peft deprecation chatter
    if threads:
        torch.set_num_threads(threads)
    if out:
        _OUT_FILE = Path(out)
        _OUT_FILE.parent.mkdir(parents=True, exist_ok=True)


def environment() -> dict:
    """What the figures were measured on (goes into each script's first JSON line)."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def emit(kind: str, **fields) -> dict:
    """Print one measurement as a JSON line (and append it to the --out file)."""
    record = {"bench": kind, **fields}
    line = json.dumps(record, sort_keys=False)
    print(line, flush=True)
    if _OUT_FILE is not None:
        with _OUT_FILE.open("a") as f:
            f.write(line + "\n")
    return record


# -- timing ----------------------------------------------------------------------------
def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """A no-op on the CPU; waits for queued kernels on a GPU (device work is asynchronous)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_once(fn: Callable[[], object], device: torch.device | str) -> tuple[float, float | None]:
    """(wall seconds, CPU seconds) for one call.

    On a GPU the wall time comes from CUDA events and there is no CPU figure. On the CPU
    the second figure is the process's CPU time: with one torch thread it is the work
    this call did, without the time other processes held the core, which on a shared
    machine is most of the noise in the wall time.
    """
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0, None
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device | str = "cpu"
) -> dict[str, dict[str, list[float]]]:
    """Time every variant ``repeats`` times, round-robin, after ``warmup`` untimed rounds.

    The order rotates each round, so no variant always runs right after the same other
    one (caches, allocator state, CPU frequency). Returns ``{"wall": {name: seconds},
    "cpu": {...}}``; "cpu" only on the CPU.
    """
    names = list(variants)
    sync = synchronizer(device)
    for _ in range(warmup):
        for name in names:
            variants[name]()
        sync()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            w, c = time_once(variants[name], device)
            wall[name].append(w)
            if c is not None:
                cpu[name].append(c)
    return {"wall": wall, "cpu": cpu} if torch.device(device).type == "cpu" else {"wall": wall}


def count_ops(fn: Callable[[], object]) -> int:
    """ATen ops one call of ``fn`` dispatches (views included). Each is Python and
    dispatcher time on the CPU, and most launch a kernel on a GPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counter.ops += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    return Counter.ops


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary_ms(values: list[float]) -> dict:
    """Median, p10, p90 (milliseconds) and the count of a list of seconds."""
    return {
        "median_ms": round(statistics.median(values) * 1e3, 3),
        "p10_ms": round(percentile(values, 10) * 1e3, 3),
        "p90_ms": round(percentile(values, 90) * 1e3, 3),
        "n": len(values),
    }


def ratio(times: dict[str, list[float]], num: str, den: str) -> dict:
    """``num`` over ``den``: the ratio of medians, and the median of per-round ratios.

    Rounds are interleaved, so the per-round ratio pairs two calls made moments apart:
    it is the figure least moved by other load on a shared machine.
    """
    paired = [a / b for a, b in zip(times[num], times[den])]
    return {
        "ratio_of_medians": round(statistics.median(times[num]) / statistics.median(times[den]), 4),
        "median_paired_ratio": round(statistics.median(paired), 4),
        "paired_p10": round(percentile(paired, 10), 4),
        "paired_p90": round(percentile(paired, 90), 4),
    }


# -- inputs and memory -----------------------------------------------------------------
def synthetic_rows(vocab_size: int, batch: int, length: int, seed: int = 0, cls_id: int = 101, sep_id: int = 102) -> list[EncodedRow]:
    """``batch`` rows of exactly ``length`` tokens ([CLS] random ... [SEP]): no padding, so every
    variant does the same arithmetic."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        body = torch.randint(1000, vocab_size, (length - 2,), generator=g).tolist()
        rows.append(EncodedRow(input_ids=[cls_id, *body, sep_id], token_type_ids=[0] * length, truncated=False))
    return rows


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), in bytes."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


# -- backbones -------------------------------------------------------------------------
# "tiny" is for dry runs of the scripts; "bert-base" is BertConfig() with random weights
# (speed does not depend on the values); "minilm" is the real packaged all-MiniLM-L6-v2.
# "bert-base-narrow" has BERT-base's 12 layers and so its op count and bias sites, at a
# width where the arithmetic is almost nothing: its time is the per-op cost (Python,
# dispatch), which is what a forward pays on a GPU that runs the kernels faster than the
# CPU can issue them.
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, max_position_embeddings=512)
NARROW_BERT = dict(hidden_size=32, num_attention_heads=2, intermediate_size=128)
MODELS = ("minilm", "bert-base", "bert-base-narrow", "tiny")


def backbone_dir(model: str, tmp: Path) -> str:
    """A local directory ``load_backbone`` can read, for one of ``MODELS``."""
    from engine.backbone import default_backbone_path, quiet_transformers

    if model == "minilm":
        return default_backbone_path()
    if model not in MODELS:
        raise ValueError(f"model {model!r} is not one of {MODELS}")
    from transformers import AutoModel, AutoTokenizer, BertConfig

    path = tmp / model
    if (path / "config.json").exists():
        return str(path)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_backbone_path())  # BERT's uncased vocab, 30522
    config = BertConfig(vocab_size=tokenizer.vocab_size, **{"tiny": TINY_BERT, "bert-base-narrow": NARROW_BERT}.get(model, {}))
    with quiet_transformers():
        AutoModel.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def register_random_tasks(engine, count: int, seed: int = 0, prefix: str = "task") -> list:
    """Register ``count`` random (valid) bias sets; returns their handles. The sets are not kept."""
    from tests.helpers import random_bias_set

    return [engine.register(random_bias_set(engine.spec, f"{prefix}-{i}", seed=seed + i)) for i in range(count)]
