"""One task's biases as one row: which columns of a bias-table row hold which site.

The table (``engine.tables``), every runner (``engine.runners``), the ONNX export and joint
training (``training.joint``) read rows through the same ``SiteLayout``; the sites
themselves are named once, in ``bias_store.sites``.
"""

from __future__ import annotations

import torch
from torch import nn

from bias_store.sites import gain_modules, site_modules


class SiteLayout:
    """An encoder's bias sites as the columns of one row: ``site -> (start, stop)``.

    ``exclude``: sites that keep the encoder's own bias for every row (``engine.shortcuts``).
    ``gains``: every LayerNorm's gain gets columns too, after all the biases.
    """

    def __init__(self, encoder: nn.Module, exclude: frozenset[str] = frozenset(), gains: bool = False) -> None:
        self.modules = {s: m for s, m in site_modules(encoder).items() if s not in exclude}  # site -> module, in module order
        self.gain_modules = gain_modules(encoder) if gains else {}  # LayerNorm site -> module
        self.offsets: dict[str, tuple[int, int]] = {}
        self.gain_offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name, module in self.modules.items():
            self.offsets[name] = (start, start + module.bias.shape[0])
            start += module.bias.shape[0]
        self.bias_width = start
        for name, module in self.gain_modules.items():
            self.gain_offsets[name] = (start, start + module.weight.shape[0])
            start += module.weight.shape[0]
        self.width = start
        self.sizes = [stop - start for start, stop in self.offsets.values()]
        self.gain_sizes = [stop - start for start, stop in self.gain_offsets.values()]

    def base(self) -> torch.Tensor:
        """The encoder's own biases (then gains) as one row, ``[width]`` (a copy)."""
        own = [m.bias for m in self.modules.values()] + [m.weight for m in self.gain_modules.values()]
        return torch.cat([p.detach().reshape(-1) for p in own]).clone()

    def split(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One ``[..., width]`` row's bias columns back into ``site -> [..., dim]`` views."""
        return dict(zip(self.modules, row[..., : self.bias_width].split(self.sizes, dim=-1)))

    def split_gains(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One ``[..., width]`` row's gain columns as ``LayerNorm site -> [..., dim]`` views (empty without gains)."""
        return dict(zip(self.gain_modules, row[..., self.bias_width :].split(self.gain_sizes, dim=-1))) if self.gain_modules else {}
