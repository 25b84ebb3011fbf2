"""The one place that names bias sites and classifier heads, per architecture.

Training (what to unfreeze), export (which tensors go in a file), validation (which keys
a file may hold) and the engine (where to add per-row biases) all import this module.
Nothing else in the project pattern-matches parameter names.

A *site* is a module of the bare encoder whose bias BitFit trains: every ``nn.Linear``
and ``nn.LayerNorm`` with a bias, the embedding LayerNorm and the pooler included.
Sites are named by module path relative to the bare encoder (``encoder.layer.0.
attention.self.query``); in a bias-set file the tensor key is the name the bias has in
``AutoModelForSequenceClassification``'s state dict (``bert.encoder.layer.0.
attention.self.query.bias``).

A *gain site* is a LayerNorm site's per-channel scale (its ``weight``): ``bitfit-ln``
trains those too (subset ``all_ln``), under their state-dict keys (``....LayerNorm.weight``),
so a set that carries them still loads with ``load_state_dict(set, strict=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bias_store.errors import UnsupportedArchitecture

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class HeadStage:
    """One Linear of a classifier head, then an optional activation."""

    name: str  # state-dict prefix, e.g. "classifier" or "classifier.dense"
    activation: str | None  # None | "tanh" | "relu" | "gelu"


@dataclass(frozen=True)
class AttentionSites:
    """Module-name suffixes of one attention block's key, value and output projections.

    The engine's exact shortcuts (``engine.shortcuts``) need to know which Linear is which:
    the key bias cancels in softmax and the value bias folds into the output's.
    """

    key: str
    value: str
    output: str


@dataclass(frozen=True)
class Architecture:
    """How ``AutoModelForSequenceClassification`` reads features and applies its head."""

    head: tuple[HeadStage, ...]
    # "pooler": BERT-style, the head reads pooler(h[:, 0]); "first_token": the head
    # reads h[:, 0] directly (RoBERTa, DistilBERT, MPNet ...).
    cls_features: str
    # Module-name suffixes of the paper's small variant: b_q (query) and b_m2 (the
    # "middle of MLP", the first FFN Linear).
    query_intermediate: tuple[str, ...]
    # The attention projections, where the shortcuts apply; None keeps the general path.
    attention: AttentionSites | None = None


_ROBERTA_HEAD = (HeadStage("classifier.dense", "tanh"), HeadStage("classifier.out_proj", None))
_BERT_QM = ("attention.self.query", "intermediate.dense")
_BERT_ATTENTION = AttentionSites("attention.self.key", "attention.self.value", "attention.output.dense")

ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture((HeadStage("classifier", None),), "pooler", _BERT_QM, _BERT_ATTENTION),
    "roberta": Architecture(_ROBERTA_HEAD, "first_token", _BERT_QM, _BERT_ATTENTION),
    "xlm-roberta": Architecture(_ROBERTA_HEAD, "first_token", _BERT_QM, _BERT_ATTENTION),
    "camembert": Architecture(_ROBERTA_HEAD, "first_token", _BERT_QM, _BERT_ATTENTION),
    # MPNet adds a relative position bias to its scores; no shortcut until a test covers it.
    "mpnet": Architecture(_ROBERTA_HEAD, "first_token", ("attention.attn.q", "intermediate.dense")),
    "distilbert": Architecture(
        (HeadStage("pre_classifier", "relu"), HeadStage("classifier", None)),
        "first_token",
        ("attention.q_lin", "ffn.lin1"),
        AttentionSites("attention.k_lin", "attention.v_lin", "attention.out_lin"),
    ),
}

# Named choices of which sites a bias set trains (the `bias_sites` metadata field).
SITE_SUBSETS = ("all", "query_intermediate", "none", "all_ln")
GAIN_SUBSETS = ("all_ln",)  # the subsets that also train every LayerNorm gain


def architecture(model_type: str) -> Architecture:
    """The head and feature layout for ``model_type``; raises if it is not supported."""
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise UnsupportedArchitecture(
            f"model_type {model_type!r} is not supported; supported: {sorted(ARCHITECTURES)}"
        ) from None


def site_modules(encoder: nn.Module) -> dict[str, nn.Module]:
    """Every bias site of a bare encoder, in module order: ``{module path: module}``."""
    from torch import nn

    return {
        name: module
        for name, module in encoder.named_modules()
        if isinstance(module, (nn.Linear, nn.LayerNorm)) and getattr(module, "bias", None) is not None
    }


def select_sites(site_names: list[str], model_type: str, subset: str) -> list[str]:
    """The sites a named subset trains, in the order given."""
    if subset in ("all", "all_ln"):
        return list(site_names)
    if subset == "none":
        return []
    if subset == "query_intermediate":
        suffixes = architecture(model_type).query_intermediate
        return [s for s in site_names if s.endswith(suffixes)]
    raise ValueError(f"unknown bias-site subset {subset!r}; choose one of {SITE_SUBSETS}")


def site_key(prefix: str, site: str) -> str:
    """State-dict key of a site's bias in the sequence-classification model."""
    return f"{prefix}.{site}.bias"


def gain_modules(encoder: nn.Module) -> dict[str, nn.LayerNorm]:
    """Every LayerNorm site with a gain (weight), in module order: ``{module path: module}``."""
    from torch import nn

    return {
        name: module for name, module in site_modules(encoder).items()
        if isinstance(module, nn.LayerNorm) and getattr(module, "weight", None) is not None
    }


def select_gain_sites(gain_sites: list[str], subset: str) -> list[str]:
    """The gain sites a named subset trains: all of them for ``all_ln``, none otherwise."""
    return list(gain_sites) if subset in GAIN_SUBSETS else []


def gain_key(prefix: str, site: str) -> str:
    """State-dict key of a LayerNorm site's gain in the sequence-classification model."""
    return f"{prefix}.{site}.weight"


def head_keys(model_type: str) -> list[str]:
    """State-dict keys of the classifier head, weight before bias, stage by stage."""
    return [f"{stage.name}.{p}" for stage in architecture(model_type).head for p in ("weight", "bias")]
