"""The encoder as an ONNX graph whose per-row bias rows are an input, exported once and cached.

``runners.pytorch.RowBiasedEncoder`` takes the gathered rows ``[batch, width]`` as a forward
argument, so the exporter traces the per-row adds as ops
on a graph input: one graph serves every task, and registering a task never touches it.
Batch and length are dynamic. Where the encoder allows, the graph runs packed batches
(``runners.onnx_packed.PackedEncoder``: several short rows per sequence, no padding), after a
probe shows them equal to padded ones; otherwise, or with ``pack=False``, it pads.

The graph comes from the TorchScript exporter (``torch.onnx.export(dynamo=False)``, opset
17) when it can make one: under ONNX Runtime its graph of MiniLM costs 14% less CPU per
forward than the dynamo exporter's (bench/plain_ceiling.py and docs/benchmarks/request_path.md)
and it exports in a quarter of the time. Where it fails (a future torch without it, a
model it cannot trace) the dynamo exporter (opset 18) makes the graph; ``meta.json``
names which one did.

The cache folder holds one sub-folder per (backbone fingerprint, exporter version, torch
version, quantization). A folder is trusted only when its ``meta.json`` names exactly that
key and the sha256 of every file it lists; anything else (a half-written export, a file
edited by hand, a graph from another exporter) is rebuilt. Exports take an ``flock`` so
that several servers starting together export once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import json
import logging
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from engine.backbone import Backbone
from engine.layout import SiteLayout
from engine.runners.onnx_packed import PACKED_INPUTS, PackedEncoder, packed_example, packs_exactly, vocab_size
from engine.runners.pytorch import RowBiasedEncoder

log = logging.getLogger(__name__)

# Bump when the graph's inputs, outputs or meaning change: older cache folders stop matching.
# 2: the TorchScript exporter first, the dynamo exporter as the fallback.
# 3: packed batches (engine.packing) where the encoder runs them exactly.
EXPORTER_VERSION = "3"
OPSET = 17  # the TorchScript exporter's; the dynamo fallback writes DYNAMO_OPSET
DYNAMO_OPSET = 18
QUANTIZE = ("none", "int8")
MAX_META_BYTES = 1 << 20  # a meta.json is ~1 KiB; a larger one is not read


class _Exported(nn.Module):
    """``RowBiasedEncoder`` with the outputs an ONNX graph can name (no None)."""

    def __init__(self, encoder: nn.Module, layout: SiteLayout) -> None:
        super().__init__()
        # "add" form: F.linear then one broadcast add, which the exporter writes as MatMul + Add.
        self.inner = RowBiasedEncoder(encoder, layout, "add")
        self.has_pooler = getattr(encoder, "pooler", None) is not None

    def forward(self, input_ids, attention_mask, rows, token_type_ids=None) -> tuple[torch.Tensor, ...]:
        hidden, pooler = self.inner(input_ids, attention_mask, rows, token_type_ids)
        return (hidden, pooler) if self.has_pooler else (hidden,)


def token_inputs(encoder: nn.Module) -> list[str]:
    """The token inputs the engine's batches carry that this encoder's forward takes."""
    params = inspect.signature(encoder.forward).parameters
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in params]


def cache_key(backbone: Backbone, layout: SiteLayout, quantize: str, pack: bool = True) -> str:
    """Everything the graph depends on: the weights, which sites take per-row biases (the
    shortcuts leave some out) and which LayerNorms take per-row gains, the exporter, the
    quantization."""
    parts = [backbone.spec.fingerprint, ",".join(layout.modules), "gains:" + ",".join(layout.gain_modules), EXPORTER_VERSION,
             torch.__version__, f"opset{OPSET}", quantize] + ([] if pack else ["padded"])
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def export_encoder(backbone: Backbone, layout: SiteLayout, path: Path, pack: bool = True) -> str:
    """Trace the encoder with rows as an input and write ``path`` (weights inside the file);
    returns the exporter that made it: ``torchscript-packed`` (a graph over packed batches,
    ``runners.onnx_packed``), else ``torchscript`` or ``dynamo`` (padded batches)."""
    if backbone.device.type != "cpu" or backbone.dtype != torch.float32:
        raise ValueError("the ONNX export runs from the fp32 CPU encoder")
    pad_id = backbone.tokenizer.pad_token_id or 0
    with_types = "token_type_ids" in token_inputs(backbone.encoder)
    if pack and packs_exactly(backbone.encoder, layout, pad_id, with_types):
        try:
            _export_packed(PackedEncoder(backbone.encoder, layout).eval(), layout, pad_id, with_types, path)
            return "torchscript-packed"
        except Exception as exc:  # noqa: BLE001 (a graph over padded batches serves as well, slower)
            log.info("exporting the packed graph failed (%s: %s); exporting a padded one", type(exc).__name__, exc)
            path.unlink(missing_ok=True)
    module = _Exported(backbone.encoder, layout).eval()
    try:
        _export_padded(module, backbone, layout, path)
        return "torchscript"
    except Exception as exc:  # noqa: BLE001 (any failure of the old exporter: the new one tries)
        log.info("the TorchScript ONNX exporter failed (%s: %s); exporting with dynamo", type(exc).__name__, exc)
        path.unlink(missing_ok=True)
        _export_dynamo(module, backbone, layout, path)
        return "dynamo"


def _example(backbone: Backbone, layout: SiteLayout) -> dict[str, torch.Tensor]:
    batch, seq = 3, 7  # not 1: the exporters would specialise a size-1 dimension
    ids = torch.full((batch, seq), 100, dtype=torch.long)
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    example["attention_mask"][1, 5:] = 0
    names = token_inputs(backbone.encoder)
    return {n: example[n] for n in names} | {"rows": layout.base().expand(batch, -1).contiguous()}


def _export_torchscript(module: nn.Module, inputs: dict[str, torch.Tensor], outputs: list[str], axes: dict, path: Path) -> None:
    """``inputs``: the example, by name, in ``module.forward``'s positional order."""
    with torch.no_grad(), _quiet_exporter():
        torch.onnx.export(module, tuple(inputs.values()), str(path), dynamo=False, input_names=list(inputs),
                          output_names=outputs, dynamic_axes={n: a for n, a in axes.items() if n in [*inputs, *outputs]},
                          opset_version=OPSET)


def _export_padded(module: _Exported, backbone: Backbone, layout: SiteLayout, path: Path) -> None:
    kwargs = _example(backbone, layout)
    # Positional, in forward's order: (input_ids, attention_mask, rows[, token_type_ids]).
    inputs = {n: kwargs[n] for n in ("input_ids", "attention_mask", "rows", "token_type_ids") if n in kwargs}
    axes = {n: ({0: "batch"} if n == "rows" else {0: "batch", 1: "seq"}) for n in inputs}
    _export_torchscript(module, inputs, ["hidden", "pooler"] if module.has_pooler else ["hidden"], axes, path)


def _export_packed(module: PackedEncoder, layout: SiteLayout, pad_id: int, with_types: bool, path: Path) -> None:
    feeds = packed_example(layout, pad_id, with_types, vocab_size(module.encoder))["feeds"]
    inputs = {n: feeds[n] for n in PACKED_INPUTS + (["token_type_ids"] if with_types else [])}
    tokens = {0: "bins", 1: "width"}
    axes = {n: tokens for n in inputs} | {"attention_mask": {0: "bins", 2: "width", 3: "width"}, "rows": {0: "batch"},
                                          "first": {0: "batch"}, "hidden": tokens, "pooler": {0: "batch"}}
    _export_torchscript(module, inputs, ["hidden", "pooler"] if module.pooler is not None else ["hidden"], axes, path)


def _export_dynamo(module: _Exported, backbone: Backbone, layout: SiteLayout, path: Path) -> None:
    kwargs = _example(backbone, layout)
    names = [n for n in kwargs if n != "rows"]
    b = torch.export.Dim("batch", min=1, max=65536)
    t = torch.export.Dim("seq", min=1, max=backbone.max_length)
    shapes = {n: {0: b, 1: t} for n in names} | {"rows": {0: b}}
    outputs = ["hidden", "pooler"] if module.has_pooler else ["hidden"]
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            module, (), kwargs=kwargs, dynamo=True, input_names=list(kwargs), output_names=outputs,
            dynamic_shapes=shapes, opset_version=DYNAMO_OPSET, verbose=False,
        )
    program.save(str(path), external_data=False)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter logs every stage at INFO and prints progress; keep start-up quiet."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])


def cached_graph(backbone: Backbone, layout: SiteLayout, cache_dir: Path, quantize: str = "none", pack: bool = True) -> Path:
    """The graph file for this backbone, exported (and quantized) on a miss, verified on a hit.
    ``pack``: a graph over packed batches where the encoder runs them exactly (else padded)."""
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, not {quantize!r}")
    folder = Path(cache_dir) / cache_key(backbone, layout, quantize, pack)
    meta = _expected_meta(backbone, layout, quantize) | {"pack": pack}
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        if _verified(folder, meta):
            log.info("ONNX graph from cache %s", folder)
            return folder / "encoder.onnx"
        if folder.is_symlink() or folder.exists():
            log.warning("ONNX cache %s is stale, corrupt or not a plain folder; exporting again", folder)
            _remove(folder)
        _build(backbone, layout, folder, meta, quantize, pack)
    return folder / "encoder.onnx"


def _expected_meta(backbone: Backbone, layout: SiteLayout, quantize: str) -> dict:
    return {
        "fingerprint": backbone.spec.fingerprint, "exporter_version": EXPORTER_VERSION, "torch": torch.__version__,
        "opset": OPSET, "quantize": quantize, "sites": list(layout.modules),
        "gain_sites": list(layout.gain_modules), "inputs": token_inputs(backbone.encoder),
    }


def _build(backbone: Backbone, layout: SiteLayout, folder: Path, meta: dict, quantize: str, pack: bool) -> None:
    """Export into a temporary folder, then rename it into place: a crash leaves no half folder."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        log.info("exporting the encoder to ONNX (once per backbone; cached in %s)", folder)
        exporter = export_encoder(backbone, layout, tmp / "fp32.onnx", pack)
        if quantize == "int8":
            quantize_int8(tmp / "fp32.onnx", tmp / "encoder.onnx")
            (tmp / "fp32.onnx").unlink()
        else:
            (tmp / "fp32.onnx").rename(tmp / "encoder.onnx")
        files = sorted(p.name for p in tmp.iterdir())
        meta = {**meta, "exporter": exporter, "sha256": {name: _sha256(tmp / name) for name in files}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verified(folder: Path, expected: dict) -> bool:
    """Whether ``folder`` holds this export. Only plain files directly in a plain folder are
    read: a symlink, a device or a name like ``../../dev/zero`` (a path outside the cache) is
    refused unread, so a planted entry cannot hang the start-up that holds the lock."""
    try:
        meta_file = _plain_file(folder, "meta.json")
        if folder.is_symlink() or meta_file is None or meta_file.stat().st_size > MAX_META_BYTES:
            return False
        meta = json.loads(meta_file.read_text())
        if {k: meta.get(k) for k in expected} != expected or "encoder.onnx" not in meta["sha256"]:
            return False
        files = {name: _plain_file(folder, name) for name in meta["sha256"]}
        if None in files.values():
            log.warning("ONNX cache %s lists a file that is not a plain file inside it: not read", folder)
            return False
        return all(_sha256(files[name]) == digest for name, digest in meta["sha256"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _plain_file(folder: Path, name: object) -> Path | None:
    """``folder/name`` if ``name`` is a bare file name and that is a regular file (not followed if a link)."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        return None
    path = folder / name
    try:
        return path if stat.S_ISREG(path.lstat().st_mode) else None
    except OSError:
        return None


def _remove(path: Path) -> None:
    """Remove a cache entry, whatever it is: a link is unlinked (never followed), a folder removed."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Not followed if a link, never blocking on a FIFO planted in its place.
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:  # a link (ELOOP) or something else: replace it with a plain lock file
        _remove(path)
        fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "r+b") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"the ONNX cache lock {path} is not a plain file")
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
