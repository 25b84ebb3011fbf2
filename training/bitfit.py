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
    lr: float  # the default learning rate (BITFIT.md: bias methods need 10-100x full's)

    @property
    def exports_bias_set(self) -> bool:
        return self.bias_sites is not None


METHODS: dict[str, Method] = {
    "bitfit": Method("bitfit", "all", 1e-3),
    "bitfit-qm": Method("bitfit-qm", "query_intermediate", 1e-3),
    "head-only": Method("head-only", "none", 1e-3),
    "full": Method("full", None, 2e-5),
}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {list(METHODS)}") from None


def trainable_keys(spec: BackboneSpec, m: Method) -> list[str]:
    """State-dict keys a bias method trains: its bias sites, then the head."""
    return spec.site_keys(m.bias_sites) + head_keys(spec.model_type)


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
