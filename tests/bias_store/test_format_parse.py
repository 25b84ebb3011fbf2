"""The bias-set parser reads a safetensors file as views of one copy of its data section,
and refuses what safetensors' own loader refuses: holes, overlaps, trailing bytes, bad shapes."""

from __future__ import annotations

import json
import struct

import pytest
import safetensors.torch
import torch

from bias_store.errors import InvalidBiasSet
from bias_store.format import dumps, loads, read_header
from engine.heads import Head
from tests.helpers import random_bias_set


def rebuild(data: bytes, edit) -> bytes:
    """``data`` with its header passed through ``edit(header, body) -> (header, body)``."""
    (n,) = struct.unpack("<Q", data[:8])
    header, body = edit(read_header(data), data[8 + n:])
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def first_tensor(header: dict) -> str:
    return min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def test_tensors_equal_safetensors_own_loader_and_do_not_alias_the_bytes(tiny_backbone):
    data = dumps(random_bias_set(tiny_backbone.spec, "t", seed=3))
    bias_set = loads(data)
    want = safetensors.torch.load(data)
    assert set(bias_set.tensors) == set(want)
    for key, tensor in want.items():
        assert torch.equal(bias_set.tensors[key], tensor) and bias_set.tensors[key].shape == tensor.shape
    before = bytes(data)
    next(iter(bias_set.tensors.values())).add_(1.0)  # the bytes a store keeps never change under a tensor
    assert data == before


def test_a_head_owns_its_storage(tiny_backbone):
    """A parsed set's tensors share one buffer; a resident head must not keep the whole file alive."""
    bias_set = loads(dumps(random_bias_set(tiny_backbone.spec, "t", seed=4)))
    head = Head.from_tensors(tiny_backbone.spec.model_type, bias_set.tensors, torch.device("cpu"))
    for weight, bias, _ in head.stages:
        assert weight.untyped_storage().nbytes() == weight.nbytes and bias.untyped_storage().nbytes() == bias.nbytes


def _shift_first(header, body):
    key = first_tensor(header)
    a, b = header[key]["data_offsets"]
    header[key]["data_offsets"] = [a + 4, b + 4]  # a hole before it and an overlap after it
    return header, body


def _grow_first(header, body):
    key = first_tensor(header)
    header[key]["shape"] = [header[key]["shape"][0] + 1] + header[key]["shape"][1:]
    return header, body


BROKEN = {
    "trailing bytes": lambda h, b: (h, b + b"\0\0\0\0"),
    "a short data section": lambda h, b: (h, b[:-4]),
    "a hole and an overlap": _shift_first,
    "a shape that does not fit its bytes": _grow_first,
    "a float in a shape": lambda h, b: ({**h, first_tensor(h): {**h[first_tensor(h)], "shape": [2.0]}}, b),
    "a negative offset": lambda h, b: ({**h, first_tensor(h): {**h[first_tensor(h)], "data_offsets": [-4, 0]}}, b),
    "offsets not a pair": lambda h, b: ({**h, first_tensor(h): {**h[first_tensor(h)], "data_offsets": [0]}}, b),
    "a boolean in a shape": lambda h, b: ({**h, first_tensor(h): {**h[first_tensor(h)], "shape": [True]}}, b),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_malformed_files_are_refused_as_not_safetensors(tiny_backbone, case):
    data = rebuild(dumps(random_bias_set(tiny_backbone.spec, "t", seed=5)), BROKEN[case])
    with pytest.raises(InvalidBiasSet) as caught:
        loads(data)
    assert caught.value.reason == "not_safetensors"
    with pytest.raises(Exception):  # noqa: B017 - safetensors refuses it too (its own error types)
        safetensors.torch.load(data)
