"""The bias-set file: a safetensors file of absolute bias values plus a classifier head.

Tensor keys are the names the tensors have in the architecture's
``AutoModelForSequenceClassification`` state dict, so that

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    model.load_state_dict(safetensors.torch.load_file(path), strict=False)

*is* the task's model (with ``pooling == Pooling.CLS``). Metadata lives in the safetensors
``__metadata__`` header, whose values must all be strings; lists and objects are JSON.
See docs/FORMAT.md for the full specification.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from bias_store.errors import InvalidBiasSet
from bias_store.kinds import InputKind, Pooling, ProblemType
from bias_store.sites import SITE_SUBSETS

if TYPE_CHECKING:
    import torch

FORMAT_NAME = "bitfit-bias-set"
FORMAT_VERSION = "1"
MAX_LABELS = 1000  # a head larger than this is no text classifier; answers repeat every label
MAX_LABEL_CHARS = 100
MAX_HEADER_BYTES = 1 << 20  # a bias set's header is a few KB; refuse absurd ones early


@dataclass
class BiasSetMeta:
    task: str
    labels: list[str]
    base_model: str
    backbone_fingerprint: str
    model_type: str
    problem_type: ProblemType = ProblemType.SINGLE_LABEL
    inputs: InputKind = InputKind.TEXT
    bias_sites: str = "all"  # a name from sites.SITE_SUBSETS
    pooling: Pooling = Pooling.CLS
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    training: dict = field(default_factory=dict)  # free-form training summary
    # Multi-label only: per-label decision thresholds on the sigmoid scores, in label order
    # (chosen on validation by training); None: 0.5 for every label.
    thresholds: list[float] | None = None

    def to_header(self) -> dict[str, str]:
        header = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "labels": json.dumps(self.labels),
            "problem_type": str(self.problem_type),
            "inputs": str(self.inputs),
            "base_model": self.base_model,
            "model_type": self.model_type,
            "backbone_fingerprint": self.backbone_fingerprint,
            "bias_sites": self.bias_sites,
            "pooling": str(self.pooling),
            "created_at": self.created_at,
            "training": json.dumps(self.training),
        }
        if self.thresholds is not None:
            header["thresholds"] = json.dumps(self.thresholds)
        return header

    @classmethod
    def from_header(cls, header: object) -> "BiasSetMeta":
        header = {} if header is None else header
        if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
            raise InvalidBiasSet("bad_metadata", "__metadata__ must be a JSON object of strings (see docs/FORMAT.md)")
        if header.get("format") != FORMAT_NAME:
            raise InvalidBiasSet("bad_metadata", f"__metadata__.format must be {FORMAT_NAME!r}, got {header.get('format')!r}")
        if header.get("format_version") != FORMAT_VERSION:
            raise InvalidBiasSet(
                "bad_metadata",
                f"__metadata__.format_version {header.get('format_version')!r} is not supported; expected {FORMAT_VERSION!r}",
            )
        required = ("task", "labels", "base_model", "backbone_fingerprint", "model_type")
        missing = [k for k in required if not header.get(k)]
        if missing:
            raise InvalidBiasSet("bad_metadata", f"__metadata__ is missing required fields: {missing}")
        labels = _json_field(header, "labels", list)
        if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
            raise InvalidBiasSet("bad_metadata", "__metadata__.labels must be a non-empty JSON list of distinct non-empty strings")
        if len(labels) > MAX_LABELS or max(len(x) for x in labels) > MAX_LABEL_CHARS:
            # Every answer repeats the labels (scores per label, per input): bounded here.
            raise InvalidBiasSet(
                "bad_metadata", f"__metadata__.labels: at most {MAX_LABELS} labels of at most {MAX_LABEL_CHARS} characters each"
            )
        problem_type = _choice(header, "problem_type", ProblemType, ProblemType.SINGLE_LABEL)
        inputs = _choice(header, "inputs", InputKind, InputKind.TEXT)
        bias_sites = header.get("bias_sites", "all")
        if bias_sites not in SITE_SUBSETS:
            raise InvalidBiasSet("bad_metadata", f"__metadata__.bias_sites is {bias_sites!r}; allowed: {list(SITE_SUBSETS)}")
        meta = cls(
            task=header["task"],
            labels=labels,
            base_model=header["base_model"],
            backbone_fingerprint=header["backbone_fingerprint"],
            model_type=header["model_type"],
            problem_type=problem_type,
            inputs=inputs,
            bias_sites=bias_sites,
            pooling=_choice(header, "pooling", Pooling, Pooling.CLS),
            created_at=header.get("created_at", ""),
            training=_json_field(header, "training", dict) if header.get("training") else {},
            thresholds=_thresholds(header, len(labels)) if header.get("thresholds") else None,
        )
        if meta.problem_type == ProblemType.REGRESSION and len(meta.labels) != 1:
            raise InvalidBiasSet("bad_metadata", "a regression task has exactly one label (the output's name)")
        _check_answerable(meta)
        if meta.thresholds is not None and meta.problem_type != "multi_label_classification":
            raise InvalidBiasSet("bad_metadata", "__metadata__.thresholds applies to multi_label_classification tasks only")
        return meta


@dataclass
class BiasSet:
    meta: BiasSetMeta
    tensors: dict[str, torch.Tensor]  # state-dict key -> fp32 tensor (absolute values)

    @property
    def num_bytes(self) -> int:
        """Raw tensor bytes (what a task costs, before any bookkeeping)."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    @property
    def num_params(self) -> int:
        return sum(t.numel() for t in self.tensors.values())


def _choice(header: dict[str, str], name: str, kind: type[ProblemType | InputKind | Pooling], default):
    value = header.get(name, default)
    try:
        return kind(value)
    except ValueError:
        raise InvalidBiasSet("bad_metadata", f"__metadata__.{name} is {value!r}; allowed: {kind.values()}") from None


def _check_answerable(meta: "BiasSetMeta") -> None:
    """Everything the metadata puts into JSON answers must encode: text checked once, here."""
    try:
        json.dumps(meta.training, allow_nan=False)  # NaN or Infinity would break every answer
        for value in (meta.task, meta.base_model, meta.created_at, *meta.labels, json.dumps(meta.training)):
            value.encode("utf-8")  # a lone surrogate ("\ud800" is valid JSON) is not text
    except ValueError as exc:  # UnicodeEncodeError is a ValueError too
        raise InvalidBiasSet("bad_metadata", f"__metadata__ holds a value no JSON answer can carry: {exc}") from None


def _json_field(header: dict[str, str], name: str, kind: type):
    try:
        value = json.loads(header[name])
    except (json.JSONDecodeError, TypeError):
        raise InvalidBiasSet("bad_metadata", f"__metadata__.{name} must be JSON ({kind.__name__})") from None
    if not isinstance(value, kind):
        raise InvalidBiasSet("bad_metadata", f"__metadata__.{name} must be a JSON {kind.__name__}")
    return value


def _thresholds(header: dict[str, str], num_labels: int) -> list[float]:
    values = _json_field(header, "thresholds", list)
    if len(values) != num_labels or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 for v in values):
        raise InvalidBiasSet("bad_metadata",
                             f"__metadata__.thresholds must be a JSON list of {num_labels} numbers in (0, 1), one per label")
    return [float(v) for v in values]


def dumps(bias_set: BiasSet) -> bytes:
    """Serialize to safetensors bytes."""
    import safetensors.torch  # here, not at import: the package imports without torch
    import torch

    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in bias_set.tensors.items()}
    return safetensors.torch.save(tensors, metadata=bias_set.meta.to_header())


def read_header(data: bytes) -> dict:
    """Parse the safetensors JSON header without loading tensors (and without pickle)."""
    if len(data) < 8:
        raise InvalidBiasSet("not_safetensors", f"file is {len(data)} bytes; not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise InvalidBiasSet("not_safetensors", "not a safetensors file (bad header length)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidBiasSet("not_safetensors", "not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidBiasSet("not_safetensors", "not a safetensors file (header is not an object)")
    return header


def loads(data: bytes) -> BiasSet:
    """Parse bytes into a BiasSet. Checks the format only; see validate.py for the rest."""
    header = read_header(data)
    meta = BiasSetMeta.from_header(header.get("__metadata__"))
    for key, info in header.items():
        if key != "__metadata__" and (not isinstance(info, dict) or info.get("dtype") != "F32"):
            dtype = info.get("dtype") if isinstance(info, dict) else None
            raise InvalidBiasSet("bad_dtype", f"tensor {key!r} has dtype {dtype}; bias sets store float32 (F32)")
    return BiasSet(meta=meta, tensors=_tensors(data, header))


def _tensors(data: bytes, header: dict) -> dict[str, torch.Tensor]:
    """The (F32) tensors as views of one copy of the data section: one copy and one
    ``frombuffer`` instead of one of each per tensor (a cold load's parse, ~0.3 ms less).
    Checked as safetensors' own loader checks a file: every shape and offset well formed,
    the tensors tiling the data section exactly (no hole, no overlap, nothing after)."""
    import torch

    start = 8 + struct.unpack("<Q", data[:8])[0]
    spans = []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if type(shape) is not list or type(offsets) is not list or len(offsets) != 2 or not _ints(offsets) or not _ints(shape):
            raise InvalidBiasSet("not_safetensors", f"corrupt safetensors file: tensor {key!r} has a bad shape or data_offsets")
        spans.append((offsets[0], offsets[1], key, shape))
    spans.sort()
    end = 0
    for first, stop, key, shape in spans:
        if first != end or stop - first != 4 * math.prod(shape):
            raise InvalidBiasSet("not_safetensors", f"corrupt safetensors file: tensor {key!r} does not sit where the header says")
        end = stop
    if end != len(data) - start:
        raise InvalidBiasSet("not_safetensors", "corrupt safetensors file: its data section is not exactly its tensors' bytes")
    # A copy: the tensors never alias the bytes (which a store keeps byte for byte).
    flat = torch.frombuffer(bytearray(memoryview(data)[start:]), dtype=torch.float32) if end else torch.empty(0)
    pieces = flat.split([(stop - first) // 4 for first, stop, _, _ in spans]) if spans else ()
    return {key: piece if len(shape) == 1 else piece.view(shape) for (_, _, key, shape), piece in zip(spans, pieces)}


def _ints(values: list) -> bool:
    """Every value a non-negative int (not a bool, not a float)."""
    return all(type(v) is int and v >= 0 for v in values)
