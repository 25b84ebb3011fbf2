"""Every validation failure has its own error and message, and nothing is stored."""

import struct

import pytest
import torch

from bias_store import (
    BiasSetTooLarge,
    FilesystemStore,
    FingerprintMismatch,
    InvalidBiasSet,
    InvalidTaskName,
    dumps,
    validate_bytes,
    validate_upload,
)
from tests.helpers import random_bias_set


@pytest.fixture()
def store(tmp_path):
    return FilesystemStore(tmp_path / "store")


def put(store, spec, data):
    """An upload as the server makes it: validated once, then stored."""
    return store.put(validate_upload(data, spec, max_bytes=2_000_000))


def _bytes(spec, **changes):
    bs = random_bias_set(spec, "good")
    for key, value in changes.items():
        if key == "tensors":
            bs.tensors = value(bs.tensors)
        else:
            setattr(bs.meta, key, value)
    return dumps(bs)


def _raw_fp16(spec):
    """dumps() always writes float32, so build a float16 file by hand."""
    import safetensors.torch

    bs = random_bias_set(spec, "good")
    tensors = {k: v.half() if k == QUERY0 else v for k, v in bs.tensors.items()}
    return safetensors.torch.save(tensors, metadata=bs.meta.to_header())


def _header(spec, change):
    """A valid file whose JSON header was changed by ``change(header)`` (bytes no writer would make)."""
    import json

    data = _bytes(spec)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    change(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _set(tensors, key, value):
    out = dict(tensors)
    out[key] = value
    return out


def _drop(tensors, key):
    return {k: v for k, v in tensors.items() if k != key}


QUERY0 = "bert.encoder.layer.0.attention.self.query.bias"


CASES = [
    # (id, builder(spec) -> bytes, exception type, reason, words the message must contain)
    ("not-safetensors", lambda s: b"PK\x03\x04 this is a zip file" * 4, InvalidBiasSet, "not_safetensors", "safetensors"),
    ("too-short", lambda s: b"abc", InvalidBiasSet, "not_safetensors", "3 bytes"),
    ("header-not-json", lambda s: struct.pack("<Q", 5) + b"{oops", InvalidBiasSet, "not_safetensors", "JSON"),
    ("pickle", lambda s: b"\x80\x04\x95" + b"\x00" * 64, InvalidBiasSet, "not_safetensors", "safetensors"),
    ("wrong-fingerprint", lambda s: _bytes(s, backbone_fingerprint="0" * 64), FingerprintMismatch, "fingerprint_mismatch", "0000000000"),
    ("wrong-architecture", lambda s: _bytes(s, model_type="roberta"), InvalidBiasSet, "wrong_architecture", "roberta"),
    ("bad-name", lambda s: _bytes(s, task="Bad Name!"), InvalidTaskName, "bad_name", "Bad Name!"),
    ("name-too-long", lambda s: _bytes(s, task="a" * 65), InvalidTaskName, "bad_name", "1-64"),
    ("unknown-key", lambda s: _bytes(s, tensors=lambda t: _set(t, "bert.encoder.layer.0.attention.self.query.weight", torch.zeros(32, 32))),
     InvalidBiasSet, "bad_keys", "query.weight"),
    ("missing-head", lambda s: _bytes(s, tensors=lambda t: _drop(t, "classifier.weight")), InvalidBiasSet, "bad_keys", "classifier.weight"),
    ("missing-site", lambda s: _bytes(s, tensors=lambda t: _drop(t, QUERY0)), InvalidBiasSet, "bad_keys", "query.bias"),
    ("wrong-shape", lambda s: _bytes(s, tensors=lambda t: _set(t, QUERY0, torch.zeros(31))), InvalidBiasSet, "bad_shape", "[31]"),
    ("head-vs-labels", lambda s: _bytes(s, labels=["a", "b", "c"]), InvalidBiasSet, "head_mismatch", "3 labels"),
    ("nan", lambda s: _bytes(s, tensors=lambda t: _set(t, QUERY0, torch.full((32,), float("nan")))), InvalidBiasSet, "non_finite", "NaN"),
    ("inf-head", lambda s: _bytes(s, tensors=lambda t: _set(t, "classifier.bias", torch.tensor([0.0, float("inf")]))),
     InvalidBiasSet, "non_finite", "classifier.bias"),
    ("huge-but-finite", lambda s: _bytes(s, tensors=lambda t: _set(t, QUERY0, torch.full((32,), 3e38))),
     InvalidBiasSet, "non_finite", "huge"),
    ("metadata-a-list", lambda s: _header(s, lambda h: h.update(__metadata__=["a"])), InvalidBiasSet, "bad_metadata", "object"),
    ("metadata-a-string", lambda s: _header(s, lambda h: h.update(__metadata__="x")), InvalidBiasSet, "bad_metadata", "object"),
    ("metadata-value-not-string", lambda s: _header(s, lambda h: h["__metadata__"].update(task=5)), InvalidBiasSet,
     "bad_metadata", "strings"),
    ("lone-surrogate-label", lambda s: _header(s, lambda h: h["__metadata__"].update(labels='["ok", "\\ud800"]')),
     InvalidBiasSet, "bad_metadata", "surrogate"),
    ("nan-in-training", lambda s: _header(s, lambda h: h["__metadata__"].update(training='{"loss": NaN}')),
     InvalidBiasSet, "bad_metadata", "JSON answer"),
    ("too-many-labels", lambda s: _bytes(s, labels=[f"l{i}" for i in range(1001)]), InvalidBiasSet, "bad_metadata", "1000"),
    ("label-too-long", lambda s: _bytes(s, labels=["a", "b" * 101]), InvalidBiasSet, "bad_metadata", "100 characters"),
    ("fp16", _raw_fp16, InvalidBiasSet, "bad_dtype", "F32"),
    ("bad-problem-type", lambda s: _bytes(s, problem_type="ranking"), InvalidBiasSet, "bad_metadata", "problem_type"),
    ("bad-pooling", lambda s: _bytes(s, pooling="max"), InvalidBiasSet, "bad_metadata", "pooling"),
    ("duplicate-labels", lambda s: _bytes(s, labels=["a", "a"]), InvalidBiasSet, "bad_metadata", "distinct"),
    ("too-large", lambda s: b"\x00" * 2_000_001, BiasSetTooLarge, "too_large", "2000000"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_invalid_bias_set_is_refused_with_its_reason_and_nothing_is_stored(store, tiny_backbone, case):
    _, build, exc_type, reason, words = case
    good = put(store, tiny_backbone.spec, dumps(random_bias_set(tiny_backbone.spec, "keep", seed=3)))
    before = sorted(p.name for p in (store.root / "tasks").rglob("*"))

    with pytest.raises(exc_type) as info:
        put(store, tiny_backbone.spec, build(tiny_backbone.spec))
    assert info.value.reason == reason
    assert words in str(info.value)

    assert sorted(p.name for p in (store.root / "tasks").rglob("*")) == before
    record, data = store.get("keep")
    assert (record.version, record.sha256) == (good.version, good.sha256)


def test_a_valid_bias_set_passes_and_roundtrips(store, tiny_backbone):
    bs = random_bias_set(tiny_backbone.spec, "ok", labels=["x", "y", "z"], subset="query_intermediate", pooling="mean")
    record = put(store, tiny_backbone.spec, dumps(bs))
    assert record.meta.labels == ["x", "y", "z"] and record.meta.pooling == "mean"
    _, data = store.get("ok")
    again = validate_bytes(data, tiny_backbone.spec)
    assert all(torch.equal(again.tensors[k], bs.tensors[k]) for k in bs.tensors)


def test_a_renamed_upload_is_stored_under_its_new_name_and_read_back_bytes_are_never_rewritten(tiny_backbone):
    """An upload whose name overrides its metadata's is re-serialized (the stored file names its
    task); bytes read back to serve another name (a hard-linked store) are only parsed."""
    data = dumps(random_bias_set(tiny_backbone.spec, "original"))
    upload = validate_upload(data, tiny_backbone.spec, name="renamed")
    assert upload.data != data and validate_bytes(upload.data, tiny_backbone.spec).meta.task == "renamed"
    read = validate_bytes(data, tiny_backbone.spec, name="alias")
    assert read.meta.task == "alias"
    assert validate_bytes(data, tiny_backbone.spec).meta.task == "original"  # the bytes themselves are untouched
    with pytest.raises(InvalidTaskName):
        validate_bytes(data, tiny_backbone.spec, name="Not A Name")
