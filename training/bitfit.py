"""What each training method trains: freeze everything, then unfreeze by bias_store.sites.

No parameter name is pattern-matched here: the bias keys come from the backbone spec
(``spec.site_keys(subset)``) and the head keys from ``sites.head_keys``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bias_store.sites import head_keys
from bias_store.spec import BackboneSpec
from training.errors import ConfigError


@dataclass(frozen=True)
class Method:
    name: str
    bias_sites: str | None  # a sites.SITE_SUBSETS name; None = every parameter (full fine-tuning)
    lr: float  # the rate with ``--lr`` unset and the search off (BITFIT.md: bias methods need 10-100x full's)
    auto_lrs: tuple[float, ...]  # what ``--lr auto`` tries on the validation split (training/lr_search.py)
    head_lr: float | None = None  # the fresh head's rate; None: the same as ``lr``

    @property
    def exports_bias_set(self) -> bool:
        return self.bias_sites is not None


# The head of a bias method learns at 1e-2: on RT's validation split head-only preferred
# 1e-2 to 1e-3 (docs/benchmarks/accuracy.md), and the biases' own rate stays searchable.
BIAS_HEAD_LR = 1e-2

METHODS: dict[str, Method] = {
    "bitfit": Method("bitfit", "all", 3e-3, (1e-3, 3e-3, 1e-2), BIAS_HEAD_LR),
    # Biases + every LayerNorm gain: 4,992 more parameters on MiniLM (13 LayerNorms x 384).
    "bitfit-ln": Method("bitfit-ln", "all_ln", 3e-3, (1e-3, 3e-3, 1e-2), BIAS_HEAD_LR),
    "bitfit-qm": Method("bitfit-qm", "query_intermediate", 3e-3, (1e-3, 3e-3, 1e-2), BIAS_HEAD_LR),
    "head-only": Method("head-only", "none", 1e-2, (3e-3, 1e-2, 3e-2)),
    "full": Method("full", None, 5e-5, (2e-5, 5e-5, 1e-4)),
}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {list(METHODS)}") from None


def trainable_keys(spec: BackboneSpec, m: Method) -> list[str]:
    """State-dict keys a bias method trains: its bias sites, then the head."""
    return spec.trained_keys(m.bias_sites) + head_keys(spec.model_type)


def prepare(model: nn.Module, spec: BackboneSpec, m: Method) -> list[str]:
    """Set ``requires_grad`` for method ``m`` and return the trained parameter names."""
    if m.bias_sites is None:
        model.requires_grad_(True)
        return [name for name, _ in model.named_parameters()]
    model.requires_grad_(False)
    keys = trainable_keys(spec, m)
    for key in keys:
        model.get_parameter(key).requires_grad_(True)
    return keys


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
