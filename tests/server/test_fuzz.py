"""No input makes the server answer 500: hypothesis throws arbitrary bodies, names and files at it."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bias_store.format import dumps
from tests.helpers import random_bias_set
from tests.server_support import serving

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=15,
)
TEXT_ITEM = st.text(max_size=40) | st.fixed_dictionaries({"text": st.text(max_size=20), "text_pair": st.text(max_size=20)}) | JSON
INPUTS = st.text(max_size=60) | st.lists(TEXT_ITEM, max_size=6) | JSON
OPTIONS = {"top_k": st.integers(-2, 5) | JSON, "return_all_scores": st.booleans() | JSON, "junk": JSON}
# Mostly well-formed bodies (so that real predictions run), then anything at all.
GOOD_INPUTS = st.text(min_size=1, max_size=60) | st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5) | st.lists(
    st.fixed_dictionaries({"text": st.text(min_size=1, max_size=20), "text_pair": st.text(min_size=1, max_size=20)}),
    min_size=1, max_size=5,
)
GOOD_OPTIONS = {"top_k": st.integers(1, 4), "return_all_scores": st.booleans()}
PREDICT_BODY = (
    st.fixed_dictionaries({"inputs": GOOD_INPUTS}, optional=GOOD_OPTIONS)
    | st.fixed_dictionaries({"inputs": INPUTS}, optional=OPTIONS)
    | JSON
)
TASK = st.sampled_from(["single", "pairs", "ghost"]) | st.text(min_size=1, max_size=20)
MULTI_BODY = st.fixed_dictionaries(
    {"items": st.lists(st.fixed_dictionaries({"task": TASK, "inputs": GOOD_INPUTS | INPUTS}, optional=OPTIONS) | JSON, max_size=4)}
) | JSON

SEEN: set[int] = set()
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_backbone):
    with serving(tmp_path_factory.mktemp("fuzz"), tiny_backbone, raise_server_exceptions=False,
                 max_wait_ms=0, max_inputs_per_request=4, max_input_chars=50) as c:
        assert c.post("/tasks", files={"file": ("a", dumps(random_bias_set(tiny_backbone.spec, "single", seed=1)))}).status_code == 201
        pairs = random_bias_set(tiny_backbone.spec, "pairs", ["x", "y", "z"], seed=2, inputs="text_pair")
        assert c.post("/tasks", files={"file": ("b", dumps(pairs))}).status_code == 201
        yield c


def assert_clean(r) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"]


@FUZZ
@given(task=st.sampled_from(["single", "pairs"]) | TASK, body=PREDICT_BODY)
def test_predict_never_500(client, task, body):
    r = client.post(f"/predict/{quote(task, safe='')}", content=json.dumps(body), headers={"content-type": "application/json"})
    assert_clean(r)
    if r.status_code == 200:
        SEEN.add(200)
        assert len(r.json()["predictions"]) == (1 if isinstance(body["inputs"], str) else len(body["inputs"]))


@FUZZ
@given(body=MULTI_BODY)
def test_multi_predict_never_500(client, body):
    assert_clean(client.post("/predict", content=json.dumps(body), headers={"content-type": "application/json"}))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_raw_bytes_never_500(client, raw):
    assert_clean(client.post("/predict/single", content=raw, headers={"content-type": "application/json"}))
    assert_clean(client.post("/tasks/single/rollback", content=raw, headers={"content-type": "application/json"}))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_corrupted_uploads_never_500(client, tiny_backbone, data):
    """Valid files with flipped bytes, cut short, or with a mangled header: 201 or a 4xx."""
    good = bytearray(dumps(random_bias_set(tiny_backbone.spec, "fuzzed", seed=3)))
    kind = data.draw(st.sampled_from(["flip", "truncate", "header"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 5))):
            good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
        blob = bytes(good)
    elif kind == "truncate":
        blob = bytes(good[: data.draw(st.integers(0, len(good) - 1))])
    else:
        n = int.from_bytes(good[:8], "little")
        header = json.loads(good[8 : 8 + n])
        field = data.draw(st.sampled_from(sorted(header["__metadata__"])))
        header["__metadata__"][field] = data.draw(st.text(max_size=20))
        raw = json.dumps(header).encode()
        blob = len(raw).to_bytes(8, "little") + raw + bytes(good[8 + n :])
    name = data.draw(st.none() | st.text(max_size=12))
    r = client.post("/tasks", files={"file": ("f", blob)}, data={"name": name} if name else None)
    assert_clean(r)


def test_the_fuzzing_reached_real_predictions():
    # Runs after the predict fuzz in file order: guards against strategies that only ever make 4xx.
    assert 200 in SEEN
