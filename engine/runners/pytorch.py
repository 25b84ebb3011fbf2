"""The PyTorch runner: each batch row with its own bias at every site, in one shared forward.

``engine.layout.SiteLayout`` lays an encoder's bias sites side by side as the columns of
one ``width``-wide row. ``per_row_biases(layout, rows)`` runs the encoder
with row ``i`` of ``rows`` ([batch, width], absolute biases) as batch row ``i``'s bias at
every site. For the length of the block each site computes its output without its own
bias and adds the row's:

- ``nn.Linear``, on the CPU: the output starts as ``b`` at every position and accumulates
  ``x W^T`` (``addmm_``, beta=1), which is how ``F.linear`` applies its own bias there; on
  a GPU: ``F.linear(x, W).add_(b)``, the same bytes in fewer ops;
  on a GPU with Triton, where it measures faster (``Engine.warm_up``): one GEMM that
  adds each row's bias in its epilogue (``row_bias_gemm``, the "fused" form);
- ``nn.LayerNorm``: ``F.layer_norm(x, ..., W, None).add_(b)``; with per-row gains
  (``bitfit-ln`` sets, a layout built with ``gains=True``): ``layer_norm(x, no affine)``
  then ``mul_(g).add_(b)`` in place;
- any other module type (a subclass, say): a forward hook adds ``b - b_base``.

On the CPU the Linear sites cost no extra pass over memory; the LayerNorm sites cost one.
On a GPU every site costs a pass, since cuBLASLt fuses a plain bias into the GEMM and a
per-row one cannot ride there, and one extra op, whose launch and Python cost is what
shows when the GPU outruns the CPU that feeds it. The writes are in place on fresh
outputs, which autograd allows, so training (``training.joint``) uses the same code with
``rows`` that need gradients.

Outside the block the encoder is untouched: the per-row forwards are set on entry and
removed on exit, so a plain forward is exactly the stock module's.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from engine.layout import SiteLayout
from engine.runners.row_bias_gemm import row_bias_linear


@contextlib.contextmanager
def per_row_biases(layout: SiteLayout, rows: torch.Tensor, linear_form: str | None = None,
                   segment: torch.Tensor | None = None) -> Iterator[None]:
    """Within this block, batch row ``i`` uses ``rows[i]`` ([batch, width]) as its biases.

    ``linear_form`` picks how Linear sites add them (``LINEAR_FORMS``); by default
    "accumulate" on the CPU and "add" elsewhere. ``segment`` (``[bins, seq]``, a packed
    batch's, ``engine.packing``): token ``(b, t)`` belongs to batch row ``segment[b, t]`` and
    gets that row's biases (one gather per site). One block per encoder at a time: the
    sites' forwards are shared state.
    """
    linear_form = linear_form or ("accumulate" if rows.device.type == "cpu" else "add")
    forwards = {nn.Linear: LINEAR_FORMS[linear_form], nn.LayerNorm: _layer_norm}  # exact types; subclasses get the hook
    if segment is None:
        biases = layout.split(rows.unsqueeze(1))  # per site: [batch, 1, dim]
        gains = layout.split_gains(rows.unsqueeze(1))  # per LayerNorm site: [batch, 1, dim]
    else:  # per site: [bins, seq, dim], each token its row's
        biases = {site: b[segment] for site, b in layout.split(rows).items()}
        gains = {site: g[segment] for site, g in layout.split_gains(rows).items()}
    rewritten, hooks = [], []
    try:
        for (site, module), bias in zip(layout.modules.items(), biases.values()):
            forward = forwards.get(type(module))
            if site in gains:
                if type(module) is not nn.LayerNorm:
                    raise RuntimeError(f"per-row gains need a plain nn.LayerNorm at {site!r}, found {type(module).__name__}")
                forward = functools.partial(_layer_norm_gain, gain=gains[site])
            if forward is None:
                hooks.append(module.register_forward_hook(_add_hook(bias, module.bias)))
            elif "forward" in module.__dict__:
                raise RuntimeError("this encoder is already inside another per-row block; run one forward at a time")
            else:
                module.__dict__["forward"] = forward(module, bias)  # an instance attribute shadows the class's forward
                rewritten.append(module)
        yield
    finally:
        for module in rewritten:
            del module.__dict__["forward"]
        for hook in hooks:
            hook.remove()


class RowBiasedEncoder(nn.Module):
    """The encoder as a function of its inputs *and* the batch's bias rows.

    ``forward(input_ids, attention_mask, rows, token_type_ids=None)`` returns
    ``(last_hidden_state [batch, seq, hidden], pooler_output [batch, hidden] or None)``.
    ``rows`` ([batch, width], absolute, ``BiasTable.gather``) is an argument, not state, so
    one traced or compiled graph serves every task mix (``engine.runners.compiled``; an exporter
    sees it as a graph input). It shares the encoder's parameters, nothing is copied.
    As the engine's runner (``engine.runners``) it is the eager PyTorch one.
    """

    backend = "torch"
    thread_safe = False  # a forward patches the site modules with its rows (per_row_biases)
    packs = False  # padded batches (engine.packing is the ONNX graph's)

    def __init__(self, encoder: nn.Module, layout: SiteLayout, linear_form: str | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.layout = layout
        self.linear_form = linear_form

    def for_layout(self, layout: SiteLayout) -> "RowBiasedEncoder":
        """The same encoder and Linear form for rows laid out as ``layout`` (a new runner;
        this one keeps serving until the engine swaps them)."""
        return RowBiasedEncoder(self.encoder, layout, self.linear_form)

    def warm_up(self, max_batch: int, max_length: int) -> None:
        """On CUDA, measure whether the fused per-row GEMM beats F.linear + add (``form_choice``)."""
        from engine.runners.form_choice import pick_linear_form  # it times this class's forward

        if next(self.parameters()).device.type == "cuda" and self.linear_form is None:
            pick_linear_form(self, max_batch, min(128, max_length))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        with per_row_biases(self.layout, rows, self.linear_form):
            out = self.encoder(**inputs)
        return out.last_hidden_state, getattr(out, "pooler_output", None)


def _per_row(bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A site's ``[batch, 1, dim]`` bias shaped to broadcast over ``x``'s positions."""
    if x.dim() == 3:
        return bias
    return bias.view(bias.shape[0], *([1] * (x.dim() - 2)), bias.shape[-1])


def _linear_accumulate(module: nn.Linear, bias: torch.Tensor):
    """CPU: start the output from each row's bias (a broadcast copy to every position) and
    accumulate ``x W^T`` into it (addmm, beta=1). That is ``F.linear``'s own recipe for its
    bias on the CPU, so the per-row bias costs no extra pass over memory."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = torch.empty((*x.shape[:-1], module.out_features), dtype=x.dtype, device=x.device)
        out.copy_(_per_row(bias, x))
        out.view(-1, module.out_features).addmm_(x.reshape(-1, x.shape[-1]), module.weight.t())
        return out

    return forward


def _linear_then_add(module: nn.Linear, bias: torch.Tensor):
    """GPU: ``F.linear(x, W).add_(b)``. The bytes moved equal the accumulate form's (a beta=1
    GEMM reads C back), and it issues about 4 fewer ops per site (BERT-base: 394 ops per
    forward against 686), which is what a GPU forward pays for when the CPU sets the pace."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, module.weight).add_(_per_row(bias, x))

    return forward


def _linear_fused(module: nn.Linear, bias: torch.Tensor):
    """GPU, where it measures faster: one Triton GEMM that adds each row's bias in its
    epilogue (``engine.runners.row_bias_gemm``), so the add costs neither a pass nor an op."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        tokens = x.shape[-2] if x.dim() == 3 else 1  # GEMM rows per batch row
        out = row_bias_linear(x.reshape(-1, x.shape[-1]), module.weight, bias[:, 0], tokens)  # [batch*tokens, out]
        return out.view(*x.shape[:-1], module.out_features)

    return forward


LINEAR_FORMS = {"accumulate": _linear_accumulate, "add": _linear_then_add, "fused": _linear_fused}


def _layer_norm(module: nn.LayerNorm, bias: torch.Tensor):
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x, module.normalized_shape, module.weight, None, module.eps)
        return out.add_(_per_row(bias, x))

    return forward


def _layer_norm_gain(module: nn.LayerNorm, bias: torch.Tensor, gain: torch.Tensor):
    """``layer_norm(x, no affine) * g[row] + b[row]``, in place on the norm's fresh output.

    On the CPU a broadcast ``torch.addcmul`` measured 10x the time of ``layer_norm(x, W)
    .add_(b)`` at MiniLM's shape (32 x 64 x 384); ``mul_`` then ``add_`` measured 1.7x."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
        return out.mul_(_per_row(gain, x)).add_(_per_row(bias, x))

    return forward


def _add_hook(bias: torch.Tensor, base: torch.Tensor):
    """For a site whose forward is not rewritten: add the row's delta to what it returned."""
    delta = bias - base.detach()  # [batch, 1, dim]

    def add_rows(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        return output + _per_row(delta, output)

    return add_rows
