"""What a bias set must match: the backbone's identity, bias sites and head shapes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bias_store import sites as site_table

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    base_model: str  # the path or hub id it was loaded from (informational)
    model_type: str  # config.model_type, the key into sites.ARCHITECTURES
    prefix: str  # state-dict prefix of the encoder in the classification model, e.g. "bert"
    hidden_size: int
    fingerprint: str  # sha256 over parameter names and fp32 values, see fingerprint()
    sites: dict[str, int]  # site module path -> bias dim, in module order
    gain_sites: dict[str, int] = field(default_factory=dict)  # LayerNorm site -> gain dim, in module order

    def site_key(self, site: str) -> str:
        return site_table.site_key(self.prefix, site)

    def site_names(self, subset: str = "all") -> list[str]:
        """The sites a named subset trains, in module order."""
        return site_table.select_sites(list(self.sites), self.model_type, subset)

    def site_keys(self, subset: str = "all") -> list[str]:
        return [self.site_key(s) for s in self.site_names(subset)]

    def gain_keys(self, subset: str = "all_ln") -> list[str]:
        """State-dict keys of the LayerNorm gains a subset trains (none unless it is a gain subset)."""
        return [site_table.gain_key(self.prefix, s) for s in site_table.select_gain_sites(list(self.gain_sites), subset)]

    def trained_keys(self, subset: str) -> list[str]:
        """Every encoder key a bias set of ``subset`` holds: its biases, then its gains."""
        return self.site_keys(subset) + self.gain_keys(subset)

    def site_gains(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{gain site: gain}`` for every LayerNorm gain in a state-dict-keyed mapping."""
        return {site: tensors[key] for site in self.gain_sites if (key := site_table.gain_key(self.prefix, site)) in tensors}

    def site_biases(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{site: bias}`` for every site whose bias is in a state-dict-keyed mapping."""
        return {site: tensors[key] for site in self.sites if (key := self.site_key(site)) in tensors}

    def head_shapes(self, num_labels: int) -> dict[str, tuple[int, ...]]:
        """Expected head tensor shapes: hidden->hidden stages, then hidden->num_labels."""
        stages = site_table.architecture(self.model_type).head
        shapes: dict[str, tuple[int, ...]] = {}
        for i, stage in enumerate(stages):
            out = num_labels if i == len(stages) - 1 else self.hidden_size
            shapes[f"{stage.name}.weight"] = (out, self.hidden_size)
            shapes[f"{stage.name}.bias"] = (out,)
        return shapes

    @property
    def bias_params_per_task(self) -> int:
        return sum(self.sites.values())


def fingerprint(encoder: nn.Module) -> str:
    """sha256 over every parameter's name, shape and float32 bytes, in name order.

    Computed on float32 values so that the same checkpoint served in fp16 or bf16 keeps its
    fingerprint, and bias sets trained in fp32 still match.
    """
    import torch

    h = hashlib.sha256()
    for name, p in sorted(encoder.named_parameters(), key=lambda kv: kv[0]):
        h.update(name.encode())
        h.update(str(tuple(p.shape)).encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def build_spec(encoder: nn.Module, model_type: str, prefix: str, base_model: str) -> BackboneSpec:
    """Describe a bare encoder (``AutoModelForSequenceClassification(...).base_model``)."""
    site_table.architecture(model_type)  # fail early on an unsupported architecture
    sites = {name: int(m.bias.shape[0]) for name, m in site_table.site_modules(encoder).items()}
    return BackboneSpec(
        base_model=base_model,
        model_type=model_type,
        prefix=prefix,
        hidden_size=int(encoder.config.hidden_size if hasattr(encoder.config, "hidden_size") else encoder.config.dim),
        fingerprint=fingerprint(encoder),
        sites=sites,
        gain_sites={name: int(m.weight.shape[0]) for name, m in site_table.gain_modules(encoder).items()},
    )
