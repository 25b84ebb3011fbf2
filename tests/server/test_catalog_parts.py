"""The catalog's small parts as tables of cases: name pages, cursors, the generation waiters."""

from __future__ import annotations

import asyncio
import threading

import pytest

from server.catalog.generation import Generation
from server.catalog.names import SortedNames
from server.exceptions import Overloaded
from server.http.paging import decode_cursor, encode_cursor

NAMES = ["a", "a/1", "a/2", "ab", "b", "b/x", "c"]


@pytest.mark.parametrize(
    ("limit", "after", "prefix", "expected"),
    [
        (3, None, "", ["a", "a/1", "a/2"]),
        (3, "a/2", "", ["ab", "b", "b/x"]),
        (10, None, "a/", ["a/1", "a/2"]),
        (10, "a/1", "a/", ["a/2"]),
        (10, "a/2", "a/", []),
        (10, "0", "b", ["b", "b/x"]),  # a cursor before the prefix starts at the prefix
        (10, "zz", "", []),
        (10, "aa", "", ["ab", "b", "b/x", "c"]),  # a cursor that names no task
        (10, None, "nope", []),
    ],
)
def test_a_page_is_a_slice_after_the_cursor_within_the_prefix(limit, after, prefix, expected):
    assert SortedNames(reversed(NAMES)).page(limit, after, prefix) == expected


def test_names_stay_sorted_through_adds_and_removes():
    names = SortedNames(["m", "c", "x"])
    for name in ("a", "z", "c", "n"):
        names.add(name)
    names.discard("x")
    names.discard("never")
    assert names.page(100) == ["a", "c", "m", "n", "z"] and len(names) == 5
    assert names.near("m", 3) == ["c", "m", "n"]


@pytest.mark.parametrize("name", ["sentiment", "acme/fraud-v2", "ünïcode", ""])
def test_cursors_round_trip(name):
    assert decode_cursor(encode_cursor(name)) == (name or None)


def test_waiters_are_woken_by_the_generation_and_bounded():
    generation = Generation(max_waiters=2)

    async def scenario():
        first = asyncio.ensure_future(generation.wait(5, timeout=5))
        second = asyncio.ensure_future(generation.wait(9, timeout=0.2))
        await asyncio.sleep(0.05)
        assert generation.waiting == 2
        with pytest.raises(Overloaded):  # a third waiter is refused at once, holding nothing
            await generation.wait(7, timeout=5)
        threading.Thread(target=generation.advance, args=(6,)).start()  # the watcher's thread
        assert await first is True
        assert await second is False  # 9 never came: a timeout, not an error
        assert await generation.wait(6, timeout=0) is True
        assert generation.waiting == 0

    asyncio.run(scenario())


def test_min_generation_is_honoured_on_the_oip_routes_too(tmp_path, tiny_backbone):
    """X-Bitfit-Min-Generation (and ?min_generation=) apply on /v2 as on the native routes."""
    from tests.server_support import serving

    with serving(tmp_path / "s", tiny_backbone, min_generation_timeout_s=0.2) as client:
        far = client.get("/v2/models/t", headers={"X-Bitfit-Min-Generation": "999999"})
        assert far.status_code == 503 and far.json()["code"] == "generation_not_reached"  # the protocol's shape
        assert far.headers["retry-after"]
        near = client.get("/v2/models/t", params={"min_generation": 0})
        assert near.status_code == 404  # reached at once: then the unknown model
