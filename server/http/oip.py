"""The Open Inference Protocol v2 (KServe / Triton REST) at the edge: its request and answer shapes.

A model is a task; its input is the ``text`` tensor (BYTES, shape ``[N]`` or ``[N, 1]``),
plus ``text_pair`` for pair tasks; its outputs are ``label`` (BYTES ``[N]``) and ``scores``
(FP32 ``[N, num_labels]``, in the task's label order). Inputs come as JSON ``data`` or with
the binary tensor extension (the JSON header is ``Inference-Header-Content-Length`` bytes,
then each input's raw bytes; a BYTES element is a little-endian uint32 length and the
UTF-8 text). Answers are always JSON, which every OIP client reads.
"""

from __future__ import annotations

import math
import struct
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from engine import InvalidInput, Prediction

OUTPUTS = ("label", "scores")


class OIPErrorBody(BaseModel):
    """An error answer on /v2: the protocol's ``{"error": "<message>"}``, our code beside it."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(examples=["task 'sentimnt' is not loaded; known tasks: sentiment"])
    code: str = Field(examples=["task_not_found"])


class OIPTensor(BaseModel):
    # Strict: a shape of ["1"] or [1.0], or a name or datatype of another JSON type, is a
    # malformed tensor, not something to coerce.
    model_config = ConfigDict(strict=True)
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class OIPRequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class OIPInferRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great", "awful"]}]}]}
    )
    id: str | None = None
    parameters: dict[str, Any] | None = None  # e.g. binary_data_output: answers are JSON anyway
    inputs: list[OIPTensor] = Field(min_length=1)
    outputs: list[OIPRequestedOutput] | None = None


def parse_infer(body: bytes, header_length: str | None) -> tuple[OIPInferRequest, list]:
    """The request and its inputs (texts or (text, text_pair) tuples). Raises ValidationError or InvalidInput."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"Inference-Header-Content-Length is {header_length!r} but the body has {len(body)} bytes")
        head, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    else:
        head, binary = body, memoryview(b"")
    request = OIPInferRequest.model_validate_json(head)
    columns: dict[str, list[str]] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name not in ("text", "text_pair"):
            raise InvalidInput(f"unknown input tensor {tensor.name!r}; this model takes 'text' (and 'text_pair' for pair tasks)")
        if tensor.name in columns:
            raise InvalidInput(f"input tensor {tensor.name!r} is given twice")
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"input {tensor.name!r} must be BYTES, got {tensor.datatype}")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            values, offset = _binary_strings(binary, offset, size, tensor.name), offset + size
        elif tensor.data is not None:
            values = _flat(tensor.data, tensor.name)
        else:
            raise InvalidInput(f"input {tensor.name!r} has neither data nor binary_data_size")
        if math.prod(tensor.shape) != len(values) or len(tensor.shape) not in (1, 2) or tensor.shape[1:] not in ([], [1]):
            raise InvalidInput(f"input {tensor.name!r} has shape {tensor.shape} and {len(values)} elements; expected [N] or [N, 1]")
        columns[tensor.name] = values
    if "text" not in columns:
        raise InvalidInput("the 'text' input tensor is missing")
    if "text_pair" not in columns:
        return request, columns["text"]
    if len(columns["text_pair"]) != len(columns["text"]):
        raise InvalidInput(f"'text' has {len(columns['text'])} elements but 'text_pair' has {len(columns['text_pair'])}")
    return request, list(zip(columns["text"], columns["text_pair"]))


def _flat(data: list, name: str) -> list[str]:
    """JSON ``data`` is the tensor flattened in row-major order (what the protocol asks and
    Triton's client sends): a nested list is refused rather than guessed at."""
    for value in data:
        if not isinstance(value, str):
            kind = "a nested list (send data flattened, row-major)" if isinstance(value, list) else f"a {type(value).__name__}"
            raise InvalidInput(f"input {name!r} holds {kind}; BYTES data must be a flat list of strings")
    return list(data)


def _binary_strings(buffer: memoryview, start: int, size: int, name: str) -> list[str]:
    """BYTES elements of the binary extension: uint32 little-endian length, then the bytes."""
    if not isinstance(size, int) or size < 0 or start + size > len(buffer):
        raise InvalidInput(f"input {name!r}: binary_data_size {size} is past the end of the body")
    out, offset, end = [], start, start + size
    while offset < end:
        if offset + 4 > end:
            raise InvalidInput(f"input {name!r}: truncated BYTES element at byte {offset - start}")
        (length,) = struct.unpack_from("<I", buffer, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInput(f"input {name!r}: a BYTES element runs past binary_data_size")
        try:
            out.append(bytes(buffer[offset : offset + length]).decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r}: element {len(out)} is not UTF-8 text") from None
        offset += length
    return out


def _wants_binary(request: OIPInferRequest) -> dict[str, bool]:
    """Output name -> answer it as binary (the output's own ``binary_data``, else the request's
    ``binary_data_output``), as Triton does: its clients then get ``bytes`` for BYTES."""
    default = bool((request.parameters or {}).get("binary_data_output", False))
    if not request.outputs:
        return dict.fromkeys(OUTPUTS, default)
    return {o.name: bool((o.parameters or {}).get("binary_data", default)) for o in request.outputs}


def _binary(datatype: str, data: list) -> bytes:
    if datatype == "BYTES":
        encoded = [value.encode() for value in data]
        return b"".join(struct.pack("<I", len(value)) + value for value in encoded)
    return struct.pack(f"<{len(data)}f", *data)


def infer_answer(
    request: OIPInferRequest, task: str, version: int, labels: list[str], predictions: list[Prediction]
) -> tuple[dict, bytes]:
    """The answer's JSON and the binary tensors that follow it (b"" when all are JSON)."""
    n = len(predictions)
    tensors = {
        "label": ("BYTES", [n], [p.label for p in predictions]),
        "scores": ("FP32", [n, len(labels)], [p.scores[label] for p in predictions for label in labels]),
    }
    outputs, chunks = [], []
    for name, binary in _wants_binary(request).items():
        datatype, shape, data = tensors[name]
        if binary:
            chunks.append(_binary(datatype, data))
            outputs.append({"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": len(chunks[-1])}})
        else:
            outputs.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    answer: dict = {"model_name": task, "model_version": str(version), "outputs": outputs}
    if request.id is not None:
        answer["id"] = request.id
    return answer, b"".join(chunks)


def check_outputs(request: OIPInferRequest) -> None:
    for output in request.outputs or ():
        if output.name not in OUTPUTS:
            raise InvalidInput(f"unknown output {output.name!r}; this model has {', '.join(OUTPUTS)}")


def model_metadata(task: str, versions: list[int], labels: list[str], problem_type: str, inputs: str) -> dict:
    tensors = [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    if inputs == "text_pair":
        tensors.append({"name": "text_pair", "datatype": "BYTES", "shape": [-1]})
    return {
        "name": task, "versions": [str(v) for v in versions], "platform": "bitfit", "inputs": tensors,
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, len(labels)]},
        ],
        # Not in the protocol's schema, and ignored by its clients: what the scores' columns are.
        "parameters": {"labels": labels, "problem_type": problem_type},
    }

