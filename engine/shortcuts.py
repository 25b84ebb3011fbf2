"""Exact algebraic shortcuts that remove two per-row sites from every attention block.

In an attention block with absolute position embeddings, a row's scores are
``s_ij = q_i · (k_j + b_k) / sqrt(d)`` and its context is ``c_i = sum_j p_ij (v_j + b_v)``:

- the key bias adds ``q_i · b_k`` to every score of query row ``i``, the same amount for
  every key ``j`` (padding keys included), and softmax is invariant to a constant shift
  of its inputs: a task's key bias never changes the output, so its per-row add is dropped
  and the key projection keeps the backbone's own bias;
- the attention weights ``p_ij`` of a row sum to one, so ``b_v`` passes through the
  softmax-weighted sum unchanged, ``c_i = sum_j p_ij v_j + b_v``, and the output projection
  turns it into ``W_o b_v``: a task's value bias folds into its output bias,
  ``b_o' = b_o + W_o (b_v - b_v0)``, where ``b_v0`` is the backbone's value bias that the
  value projection still adds for every row.

Both hold per head and per row, with any attention mask. They need absolute positions:
a relative-key scheme (BERT's old ``relative_key_query``) adds ``k_j · r_ij`` terms that
vary with ``j``, so for any other ``position_embedding_type`` the general path is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from bias_store.sites import architecture

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttentionBlock:
    key: str  # site names (module paths) of one block's projections
    value: str
    output: str


@dataclass(frozen=True)
class Shortcuts:
    """The blocks of one encoder whose key and value sites need no per-row add."""

    blocks: tuple[AttentionBlock, ...]
    value_base: dict[str, torch.Tensor]  # value site -> the backbone's b_v0 [dim], fp32 CPU
    output_weight: dict[str, torch.Tensor]  # output site -> W_o [out, in], the backbone's own (no copy)

    @property
    def dropped_sites(self) -> frozenset[str]:
        """Sites that keep the backbone's own bias for every row."""
        return frozenset(s for b in self.blocks for s in (b.key, b.value))

    def fold(self, biases: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A task's ``site -> absolute bias`` rewritten for the kept sites.

        ``base`` gives a kept site's backbone bias where the task leaves it out. The key and
        value sites are gone; each output site carries ``b_o + W_o (b_v - b_v0)``.
        """
        out = {site: value for site, value in biases.items() if site not in self.dropped_sites}
        for block in self.blocks:
            if block.value not in biases:
                continue  # the task keeps b_v0, which the value projection still adds
            shift = biases[block.value].float().cpu() - self.value_base[block.value]  # [dim]
            # fp64 for the product: the folded bias must match the unfolded forward to fp32 rounding.
            weight = self.output_weight[block.output].detach().to("cpu", torch.float64)
            moved = (weight @ shift.double()).float()  # [out]
            b_o = out.get(block.output, base[block.output]).float().cpu()
            out[block.output] = b_o + moved
        return out


def shortcuts_for(encoder: nn.Module, model_type: str, sites: dict[str, nn.Module]) -> Shortcuts | None:
    """The shortcuts for ``encoder``'s bias ``sites``, or None where they are not exact."""
    roles = architecture(model_type).attention
    position = getattr(encoder.config, "position_embedding_type", "absolute")
    if roles is None or position != "absolute":
        log.info("no attention shortcuts for %s (position embeddings %s): general per-row path", model_type, position)
        return None
    blocks = []
    for site in sites:
        if not site.endswith("." + roles.key):
            continue
        prefix = site[: -len(roles.key)]
        block = AttentionBlock(site, prefix + roles.value, prefix + roles.output)
        if block.value not in sites or block.output not in sites:
            log.info("no attention shortcuts: %s lacks a value or output bias site", prefix.rstrip("."))
            return None
        blocks.append(block)
    if not blocks:
        return None
    return Shortcuts(
        tuple(blocks),
        {b.value: sites[b.value].bias.detach().float().cpu() for b in blocks},
        {b.output: sites[b.output].weight for b in blocks},
    )
