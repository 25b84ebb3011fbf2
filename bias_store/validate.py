"""Validation of an uploaded bias set against the serving backbone, before anything is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bias_store.errors import BiasSetTooLarge, FingerprintMismatch, InvalidBiasSet, InvalidTaskName
from bias_store.format import BiasSet, dumps, loads
from bias_store.spec import BackboneSpec

# One optional "." separates a tenant's namespace from the name (``acme.sentiment``; scoped
# keys grant ``acme.*``, server/http/tenancy.py). Each part starts with a letter or digit, so
# a name is never ".", "..", hidden, or a path: it stays one safe folder / S3 key segment.
TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}(\.[a-z0-9][a-z0-9_-]{0,63})?")
MAX_ABS_VALUE = 1e4  # BitFit biases and heads are O(1); this bound keeps every forward finite
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # a BERT-base set is ~0.4 MB; RoBERTa heads add ~2.4 MB


def check_task_name(name: str) -> str:
    if not isinstance(name, str) or not TASK_NAME.fullmatch(name):
        raise InvalidTaskName(str(name))
    return name


@dataclass(frozen=True)
class ValidatedUpload:
    """A bias set that passed every check, with the exact bytes a store keeps for it."""

    bias_set: BiasSet
    data: bytes  # the upload byte for byte, or re-serialized when its task name was overridden

    @property
    def name(self) -> str:
        return self.bias_set.meta.task


def validate_upload(
    data: bytes, spec: BackboneSpec, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None
) -> ValidatedUpload:
    """Parse and fully validate ``data`` once; ``name`` overrides the task name in the metadata."""
    bias_set, renamed = _parsed(data, spec, max_bytes, name)
    # Stored byte for byte, unless the name was overridden: the file must carry its task's name.
    return ValidatedUpload(bias_set, dumps(bias_set) if renamed else data)


def validate_bytes(
    data: bytes, spec: BackboneSpec, *, max_bytes: int = DEFAULT_MAX_BYTES, name: str | None = None
) -> BiasSet:
    """The validated BiasSet of ``data`` (the checks of ``validate_upload``), for bytes that are
    read, not stored: nothing is re-serialized when ``name`` overrides the metadata's."""
    return _parsed(data, spec, max_bytes, name)[0]


def _parsed(data: bytes, spec: BackboneSpec, max_bytes: int, name: str | None) -> tuple[BiasSet, bool]:
    if len(data) > max_bytes:
        raise BiasSetTooLarge(len(data), max_bytes)
    bias_set = loads(data)
    renamed = name is not None and name != bias_set.meta.task
    if renamed:
        bias_set.meta.task = name
    validate(bias_set, spec)
    return bias_set, renamed


def validate(bias_set: BiasSet, spec: BackboneSpec) -> None:
    """Raise a specific InvalidBiasSet subclass for the first thing that is wrong."""
    import torch  # here, not at import: the package imports without torch

    meta = bias_set.meta
    check_task_name(meta.task)
    if meta.model_type != spec.model_type:
        raise InvalidBiasSet(
            "wrong_architecture", f"bias set is for model_type {meta.model_type!r}; this backbone is {spec.model_type!r}"
        )
    if meta.backbone_fingerprint != spec.fingerprint:
        raise FingerprintMismatch(meta.backbone_fingerprint, spec.fingerprint)

    head, trained, allowed_sites, dims = _expected(spec, meta.bias_sites, len(meta.labels))
    keys = set(bias_set.tensors)

    unknown = sorted(keys - allowed_sites - set(head))
    if unknown:
        raise InvalidBiasSet("bad_keys", f"unexpected tensors for this backbone: {unknown[:5]}" + (" ..." if len(unknown) > 5 else ""))
    missing_head = sorted(set(head) - keys)
    if missing_head:
        raise InvalidBiasSet("bad_keys", f"classifier head tensors missing: {missing_head}")
    site_keys = keys & allowed_sites
    if site_keys != trained:
        missing, extra = sorted(trained - site_keys), sorted(site_keys - trained)
        raise InvalidBiasSet(
            "bad_keys",
            f"bias_sites={meta.bias_sites!r} needs exactly its sites' biases (and for all_ln, LayerNorm gains); "
            f"missing: {missing[:5]}, not part of it: {extra[:5]}",
        )

    for key, tensor in bias_set.tensors.items():
        expected = head.get(key) or dims[key]
        if tuple(tensor.shape) != expected:
            reason = "head_mismatch" if key in head else "bad_shape"
            detail = f" (the head must match the {len(meta.labels)} labels)" if key in head else ""
            raise InvalidBiasSet(reason, f"tensor {key!r} has shape {list(tensor.shape)}, expected {list(expected)}{detail}")
        if tensor.dtype != torch.float32:
            raise InvalidBiasSet("bad_dtype", f"tensor {key!r} is {tensor.dtype}; bias sets store float32")
    # One pass over every value; only a failure looks for the tensor to name. Finite but
    # huge values are refused too: they overflow in the forward (fp16 tops out at 65504)
    # and the task would answer NaN scores.
    if not (torch.cat([t if t.dim() == 1 else t.reshape(-1) for t in bias_set.tensors.values()]).abs() <= MAX_ABS_VALUE).all():
        bad = next(k for k, t in bias_set.tensors.items() if not (t.abs() <= MAX_ABS_VALUE).all())
        raise InvalidBiasSet(
            "non_finite", f"tensor {bad!r} holds NaN, infinite or huge values (|value| must be <= {MAX_ABS_VALUE:g})"
        )


_EXPECTED: dict[tuple, tuple] = {}  # (spec, bias_sites, labels) -> what a set must hold: built once, not per load


def _expected(spec: BackboneSpec, bias_sites: str, num_labels: int) -> tuple[dict, frozenset, frozenset, dict]:
    """The head's shapes, the trained keys, every allowed site key and each site key's shape."""
    key = (spec.fingerprint, spec.model_type, spec.prefix, bias_sites, num_labels)
    found = _EXPECTED.get(key)
    if found is None:
        head = spec.head_shapes(num_labels)
        dims = {spec.site_key(s): (d,) for s, d in spec.sites.items()}
        dims.update({k: (d,) for k, d in zip(spec.gain_keys("all_ln"), spec.gain_sites.values())})
        allowed = frozenset(spec.site_keys("all")) | frozenset(spec.gain_keys("all_ln"))
        found = (head, frozenset(spec.trained_keys(bias_sites)), allowed, dims)
        if len(_EXPECTED) < 4096:  # bounded: a few subsets x label counts per backbone
            _EXPECTED[key] = found
    return found
