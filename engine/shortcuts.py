"""Exact algebraic shortcuts that remove per-row sites from every block of the encoder.

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

In a post-LayerNorm encoder (BERT, RoBERTa, DistilBERT: ``bias_store.sites.NormSites``) a
norm's bias is also linear downstream. A norm's output ``h + β`` is read by Linears,
``W (h + β) + b = W h + (b + W β)``, and added back as the residual to one Linear's output
before the next norm, ``(W' x + b') + (h + β)``. So a task's ``Δβ = β - β0`` folds into
those Linears' biases and the norm keeps the backbone's ``β0`` for every row:

- the norm before a block (the embeddings' or the previous block's last): the query gets
  ``W_q Δβ``, the value ``W_v Δβ`` (then folded as above), the key nothing (softmax), and
  the attention output ``Δβ`` (the residual);
- the norm after the attention: the FFN's first Linear gets ``W_i Δβ``, its second ``Δβ``.

The encoder's last norm is kept: its output leaves the encoder. Per-row LayerNorm gains
(``bitfit-ln``) stay per row: they scale ``h`` only, and ``β`` still adds after them.
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
    """One block's site names (module paths). The norm fields are None where norms are not folded."""

    key: str
    value: str
    output: str
    query: str | None = None
    input_norm: str | None = None  # the folded norm whose output this block reads
    middle: str | None = None  # the folded norm after the attention; its reader and the FFN output follow it
    reader: str | None = None
    ffn_output: str | None = None

    @property
    def folded_norms(self) -> tuple[str, ...]:
        return tuple(n for n in (self.input_norm, self.middle) if n is not None)


@dataclass(frozen=True)
class Shortcuts:
    """The blocks of one encoder whose key, value and (where folded) norm sites need no per-row add."""

    blocks: tuple[AttentionBlock, ...]
    value_base: dict[str, torch.Tensor]  # value site -> the backbone's b_v0 [dim], fp32 CPU
    output_weight: dict[str, torch.Tensor]  # output site -> W_o [out, in], the backbone's own (no copy)
    norm_base: dict[str, torch.Tensor]  # folded norm -> the backbone's β0 [dim], fp32 CPU
    reader_weight: dict[str, torch.Tensor]  # query, value and FFN reader sites -> W [out, in], fp32 CPU

    @property
    def dropped_sites(self) -> frozenset[str]:
        """Sites that keep the backbone's own bias for every row."""
        return frozenset(s for b in self.blocks for s in (b.key, b.value, *b.folded_norms))

    def norm_terms(self, biases: dict[str, torch.Tensor]) -> tuple[dict[int, torch.Tensor], list[tuple[str, torch.Tensor]]]:
        """What a task's folded norm biases add: per block index, ``W_v Δβ`` for its value
        shift (before the value fold), and ``(site, term)`` pairs for kept sites, in order.
        One computation (fp32 products) for ``fold`` and ``engine.row_builder`` alike."""
        extra: dict[int, torch.Tensor] = {}
        terms: list[tuple[str, torch.Tensor]] = []
        for i, block in enumerate(self.blocks):
            if block.input_norm is not None and block.input_norm in biases:
                delta = biases[block.input_norm].float().cpu() - self.norm_base[block.input_norm]
                terms += [(block.query, self.reader_weight[block.query] @ delta), (block.output, delta)]
                extra[i] = self.reader_weight[block.value] @ delta
            if block.middle is not None and block.middle in biases:
                delta = biases[block.middle].float().cpu() - self.norm_base[block.middle]
                terms += [(block.reader, self.reader_weight[block.reader] @ delta), (block.ffn_output, delta)]
        return extra, terms

    def fold(self, biases: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A task's ``site -> absolute bias`` rewritten for the kept sites.

        ``base`` gives a kept site's backbone bias where the task leaves it out. The key,
        value and folded norm sites are gone; their shifts sit in the kept sites downstream.
        """
        out = {site: value for site, value in biases.items() if site not in self.dropped_sites}
        extra, terms = self.norm_terms(biases)
        for site, term in terms:
            out[site] = out.get(site, base[site]).float().cpu() + term
        for i, block in enumerate(self.blocks):
            if block.value not in biases and i not in extra:
                continue  # the task keeps b_v0, which the value projection still adds
            value = biases[block.value].float().cpu() if block.value in biases else self.value_base[block.value]
            shift = value - self.value_base[block.value]  # [dim]
            if i in extra:
                shift = shift + extra[i]
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
    blocks = _with_norms(blocks, model_type, roles.key, sites)
    readers = {s for b in blocks if b.query is not None for s in (b.query, b.value, b.reader)}
    return Shortcuts(
        tuple(blocks),
        {b.value: sites[b.value].bias.detach().float().cpu() for b in blocks},
        {b.output: sites[b.output].weight for b in blocks},
        {n: sites[n].bias.detach().float().cpu() for b in blocks for n in b.folded_norms},
        {s: sites[s].weight.detach().to("cpu", torch.float32) for s in readers},
    )


def _with_norms(blocks: list[AttentionBlock], model_type: str, key: str, sites: dict[str, nn.Module]) -> list[AttentionBlock]:
    """``blocks`` with their norms to fold, where the architecture names them and every
    site is there with matching widths; else ``blocks`` as they are (norms per row)."""
    roles = architecture(model_type).norms
    if roles is None:
        return blocks
    folded, before = [], roles.embeddings
    for block in blocks:
        prefix = block.key[: -len(key)]
        named = {"query": prefix + roles.query, "input_norm": before, "middle": prefix + roles.middle,
                 "reader": prefix + roles.reader, "ffn_output": prefix + roles.ffn_output}
        if not _fits(named, block, sites):
            log.info("LayerNorm biases stay per row: %s does not have the post-norm layout", prefix.rstrip("."))
            return blocks
        folded.append(AttentionBlock(block.key, block.value, block.output, **named))
        before = prefix + roles.end
    return folded


def _fits(named: dict[str, str], block: AttentionBlock, sites: dict[str, nn.Module]) -> bool:
    """Every site there, the norms LayerNorms and the Linears reading them as wide as they are."""
    modules = {k: sites.get(v) for k, v in named.items()} | {"value": sites.get(block.value), "output": sites.get(block.output)}
    if any(m is None for m in modules.values()):
        return False
    norms = [modules["input_norm"], modules["middle"]]
    linears = [modules[k] for k in ("query", "value", "output", "reader", "ffn_output")]
    if not all(type(m) is nn.LayerNorm for m in norms) or not all(isinstance(m, nn.Linear) for m in linears):
        return False
    into, after = (m.normalized_shape[-1] for m in norms)
    query, value, output, reader, ffn_output = linears
    return (query.in_features == value.in_features == output.out_features == into
            and reader.in_features == ffn_output.out_features == after)
