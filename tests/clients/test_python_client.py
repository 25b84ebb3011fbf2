"""bitfit_client against a real uvicorn server: every call, typed errors, keys, async."""

from __future__ import annotations

import asyncio

import pytest
from bitfit_client import (
    AsyncClient,
    Client,
    FingerprintMismatch,
    Forbidden,
    InvalidInput,
    Item,
    LabelChange,
    Retry,
    TaskNotFound,
    TransportError,
    Unauthorized,
    ValidationError,
    VersionNotFound,
)

from bias_store.format import dumps
from engine import Engine
from tests.helpers import free_port, random_bias_set
from tests.server_support import TEXTS, live_server

ADMIN, READER = "admin-key-0123456789", "reader-key-0123456789"


@pytest.fixture(scope="module")
def url(tmp_path_factory, tiny_backbone):
    with live_server(tmp_path_factory.mktemp("client-store"), tiny_backbone, api_keys=[ADMIN], predict_api_keys=[READER]) as url:
        yield url


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):
    monkeypatch.delenv("BITFIT_API_KEY", raising=False)


def test_tasks_and_predict_round_trip(url, tiny_backbone, monkeypatch):
    spec = tiny_backbone.spec
    v1, v2 = random_bias_set(spec, "mood", seed=1), random_bias_set(spec, "mood", seed=2)
    pair = random_bias_set(spec, "nli", inputs="text_pair", seed=3)
    monkeypatch.setenv("BITFIT_API_KEY", ADMIN)  # the one variable every bitfit tool reads
    with Client(url) as client:
        assert client.health() and client.ready().fingerprint == spec.fingerprint
        client.check_admin()
        assert client.upload(dumps(v1)).version == 1
        assert client.replace("mood", dumps(v2)).version == 2
        assert client.upload(dumps(pair), name="nli").inputs == "text_pair"
        assert [t.name for t in client.list_tasks(page_size=1)] == ["mood", "nli"]  # two pages, one cursor
        assert [(t.name, t.state) for t in client.list_tasks(prefix="n")] == [("nli", "resident")]
        assert client.get_task("mood").versions == [1, 2]

        reference = Engine(tiny_backbone)
        reference.register(v1)
        one = client.predict("mood", TEXTS[0])
        assert one.version == 2 and len(one.predictions) == 1
        old = client.predict("mood", TEXTS, top_k=1, version=1)
        assert [p.label for p in old.predictions] == [p.label for p in reference.predict("mood", TEXTS)]
        assert all(len(p.scores) == 1 for p in old.predictions)
        assert len(client.predict("nli", [("a man plays", "someone makes music")]).predictions) == 1
        many = client.predict_many([Item("mood", "hi", version=1), Item("nli", [("a", "b")])])
        assert [(r.task, r.version) for r in many] == [("mood", 1), ("nli", 1)]

        assert client.rollback("mood").version == 1
        client.delete_task("nli")
        with pytest.raises(TaskNotFound) as info:
            client.predict("nli", [("a", "b")])
        assert info.value.status == 404 and info.value.known_tasks == ["mood"]


def test_typed_errors(url, tiny_backbone):
    with Client(url, api_key=ADMIN) as client:
        client.upload(dumps(random_bias_set(tiny_backbone.spec, "typed", seed=5)))
        with pytest.raises(VersionNotFound) as info:
            client.predict("typed", "hi", version=9)
        assert info.value.available_versions == [1]
        with pytest.raises(InvalidInput):
            client.predict("typed", [("a", "b")])  # pairs to a single-text task
        with pytest.raises(ValidationError):
            client.predict("typed", "hi", top_k=0)
        other = random_bias_set(tiny_backbone.spec, "alien", seed=6)
        other.meta.backbone_fingerprint = "0" * 64
        with pytest.raises(FingerprintMismatch):
            client.upload(dumps(other))
        relabelled = dumps(random_bias_set(tiny_backbone.spec, "typed", labels=["no", "yes"], seed=6))
        with pytest.raises(LabelChange) as changed:
            client.replace("typed", relabelled)
        assert (changed.value.old_labels, changed.value.new_labels) == (["negative", "positive"], ["no", "yes"])
        assert client.replace("typed", relabelled, allow_label_change=True).labels == ["no", "yes"]
        client.delete_task("typed")


def test_keys(url):
    with Client(url, api_key=READER) as reader, pytest.raises(Forbidden):
        reader.check_admin()
    with Client(url) as anonymous:
        assert anonymous.health()  # open
        with pytest.raises(Unauthorized):
            list(anonymous.list_tasks())


def test_async_client(url, tiny_backbone):
    async def main() -> None:
        async with AsyncClient(url, api_key=ADMIN) as client:
            await client.upload(dumps(random_bias_set(tiny_backbone.spec, "aio", seed=7)))
            results = await asyncio.gather(*(client.predict("aio", text) for text in TEXTS))
            assert [r.predictions[0].label for r in results] == [(await client.predict("aio", TEXTS)).predictions[i].label
                                                                 for i in range(len(TEXTS))]
            with pytest.raises(TaskNotFound):
                await client.get_task("nope")
            await client.delete_task("aio")

    asyncio.run(main())


def test_unreachable_server_is_a_transport_error_after_retries():
    with Client(f"http://127.0.0.1:{free_port()}", retry=Retry(attempts=2, backoff_s=0.01)) as client:
        with pytest.raises(TransportError):
            client.health()


def test_parameters_min_generation_and_request_ids(url, tiny_backbone):
    with Client(url, api_key=ADMIN) as client:
        stored = client.upload(dumps(random_bias_set(tiny_backbone.spec, "params", seed=8)))
        generation = stored.model_extra["generation"]
        reference = Engine(tiny_backbone)
        reference.register(random_bias_set(tiny_backbone.spec, "params", seed=8))
        (expected,) = reference.predict("params", [TEXTS[0]])
        raw = client.predict("params", TEXTS[0], function_to_apply="none", min_generation=generation, timeout=10)
        assert raw.predictions[0].scores == pytest.approx(dict(zip(expected.scores, expected.logits)), abs=1e-5)
        with pytest.raises(InvalidInput) as info:
            client.predict("params", "word " * 400, truncation=False)
        assert info.value.request_id and len(info.value.request_id) == 32
        (many,) = client.predict_many([Item("params", TEXTS[0], function_to_apply="sigmoid")], min_generation=generation)
        assert all(0 < s < 1 for s in many.predictions[0].scores.values())
        client.delete_task("params")
