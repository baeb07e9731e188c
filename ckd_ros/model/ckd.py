"""The CKD inference network: two ViT branches in lockstep, shared token elimination, fused head.

No coroutines: block *i* of every branch runs, then (at an elimination block) one decision is made
and applied, then the MLP halves run. This is the form docs/model.md describes, verified bit-exact against the
official greenlet implementation, and it has static shapes at a fixed batch, so it traces and
exports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ckd_ros.errors import ConfigError, InputError
from ckd_ros.model.config import ModelConfig
from ckd_ros.model.elimination import (
    gather_search,
    keep_count,
    kept_indices,
    scatter_search,
    template_center_mask,
)
from ckd_ros.model.head import BoxHead, build_head
from ckd_ros.model.int8 import int8_support, quantize_linears
from ckd_ros.model.stacked import StackedBranches
from ckd_ros.model.vit import ViTBranch


@dataclass
class LockstepOutput:
    """What running several branches together yields.

    ``tokens``: per branch (B, Lz+Ls, C) after the final LayerNorm, removed search positions
    re-inserted as exact zeros. ``block_outputs``: per branch, the residual stream after each block
    (before the final norm), only when asked for (distillation needs them). ``kept_index``: per
    branch, the original raster positions of the surviving search tokens, in kept order.
    """

    tokens: list[Tensor]
    block_outputs: list[list[Tensor]] | None
    kept_index: list[Tensor]


def run_lockstep(
    branches: Sequence[ViTBranch],
    tokens: Sequence[Tensor],
    cfg: ModelConfig,
    template_mask: Tensor | None,
    num_deciders: int = 2,
    collect_blocks: bool = False,
    fused_attention: bool = False,
) -> LockstepOutput:
    """Run branches block by block with the elimination policy of ``cfg``.

    Under MCE the decision comes from the element-wise max of the first ``num_deciders`` branches'
    attention maps (the two students) and is applied to every branch (stage-2 training also runs
    the teachers through it). Under CE each branch decides for itself. ``fused_attention`` uses the
    SDPA kernel in blocks that need no attention map (faster; equal up to float rounding).
    """
    lz = cfg.template_feat**2
    ls = cfg.search_feat**2
    batch = tokens[0].shape[0]
    device = tokens[0].device
    tokens = list(tokens)
    base_index = torch.arange(ls, device=device).expand(batch, ls)
    kept_index = [base_index] * len(branches)
    elim_layers = set(cfg.elimination_layers)
    block_outputs: list[list[Tensor]] | None = [[] for _ in branches] if collect_blocks else None
    for i in range(cfg.depth):
        eliminate = i in elim_layers and keep_count(tokens[0].shape[1] - lz, cfg.ce_keep_ratio) < tokens[0].shape[1] - lz
        need_weights = eliminate or not fused_attention
        halves = [br.blocks[i].attention_half(t, need_weights) for br, t in zip(branches, tokens, strict=False)]
        tokens = [h[0] for h in halves]
        if eliminate:
            keep = keep_count(tokens[0].shape[1] - lz, cfg.ce_keep_ratio)
            keep_idx = kept_indices([h[1] for h in halves], lz, template_mask, keep, cfg.ce_mode, num_deciders)
            tokens = [gather_search(t, lz, k) for t, k in zip(tokens, keep_idx, strict=False)]
            kept_index = [g.gather(1, k) for g, k in zip(kept_index, keep_idx, strict=False)]
        tokens = [br.blocks[i].mlp_half(t) for br, t in zip(branches, tokens, strict=False)]
        if block_outputs is not None:
            for store, t in zip(block_outputs, tokens, strict=False):
                store.append(t)
    final = []
    for br, t, g in zip(branches, tokens, kept_index, strict=False):
        t = br.norm(t)
        if t.shape[1] - lz < ls:
            t = torch.cat([t[:, :lz], scatter_search(t[:, lz:], g, ls)], dim=1)
        final.append(t)
    return LockstepOutput(final, block_outputs, kept_index)


def head_input(features: Sequence[Tensor], num_search: int, feat_size: int) -> Tensor:
    """Channel-concatenate branch tokens (RGB first) and lay the search part out as NCHW.

    The tensor is made contiguous: a channels-last-like view changes conv results by ~1e-5.
    """
    fused = torch.cat(list(features), dim=-1)[:, -num_search:]
    b, _, c = fused.shape
    return fused.transpose(1, 2).contiguous().view(b, c, feat_size, feat_size)


class CKDNet(nn.Module):
    """RGB and TIR student branches plus the fused box head (``head.py``; the 394-key inference model)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rgb_branch = ViTBranch(cfg)
        self.tir_branch = self.rgb_branch if cfg.share_student else ViTBranch(cfg)
        self.box_head: BoxHead = build_head(2 * cfg.embed_dim, cfg)
        self.fused_attention = False
        self.stacked: StackedBranches | None = None
        self.fused_head: nn.Module | None = None
        self.int8 = False
        self.register_buffer("ce_template_mask", template_center_mask(cfg.template_feat), persistent=False)

    def set_elimination(self, ce_mode: str | None = None, ce_loc: Sequence[int] | None = None) -> None:
        """Switch token elimination without touching weights (same checkpoint for every mode)."""
        changes: dict[str, object] = {}
        if ce_mode is not None:
            changes["ce_mode"] = ce_mode
        if ce_loc is not None:
            changes["ce_loc"] = tuple(ce_loc)
            if not ce_loc:
                changes["ce_mode"] = "none"
        self.cfg = self.cfg.replace(**changes)

    def stack_branches(self, enable: bool = True) -> None:
        """Run parallel branches as batched computations — the RGB and TIR backbones
        (``stacked.py``) and the head's parallel parts (``BoxHead.fused``) — or go back to the
        per-branch path. Takes a copy of the current weights (in their current dtype and device):
        call it after casting or loading, not before."""
        if self.int8:
            if enable:
                raise ConfigError("stack_branches needs float weights; an int8 model runs its branches one by one")
            return
        self.stacked = StackedBranches([self.rgb_branch, self.tir_branch], self.cfg) if enable else None
        self.fused_head = self.box_head.fused() if enable else None

    def quantize_int8(self) -> None:
        """CPU int8 inference (``int8.py``), in place and for good: the branches' linear layers
        become int8 GEMMs (their fp32 weights are dropped; the state_dict no longer holds them) and
        the head runs in its fused form with its first convolution in int8 (``BoxHead.fused``).
        Inference only."""
        if self.int8:
            return
        support = int8_support()
        if not support.available:
            raise ConfigError(f"int8 is not available here: {support.reason}")
        if next(self.parameters()).device.type != "cpu":
            raise ConfigError("int8 runs on the CPU only; on CUDA use fp16")
        self.stack_branches(False)
        for branch in {id(b): b for b in (self.rgb_branch, self.tir_branch)}.values():
            quantize_linears(branch.blocks)
        self.fused_head = self.box_head.fused(int8_first=True)
        self.int8 = True

    def check_inputs(self, template_rgb: Tensor, template_tir: Tensor, search_rgb: Tensor, search_tir: Tensor) -> None:
        t, s = self.cfg.template_size, self.cfg.search_size
        batch = template_rgb.shape[0] if template_rgb.ndim == 4 else None
        for name, x, size in (
            ("template_rgb", template_rgb, t),
            ("template_tir", template_tir, t),
            ("search_rgb", search_rgb, s),
            ("search_tir", search_tir, s),
        ):
            if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size or x.shape[0] != batch:
                raise InputError(
                    f"{name} has shape {tuple(x.shape)}; model {self.cfg.name!r} expects "
                    f"({batch if batch else 'B'}, 3, {size}, {size}) with one batch size for all four inputs"
                )

    def template_mask(self, batch: int) -> Tensor | None:
        if self.cfg.ce_template_range == "all":
            return None
        return self.ce_template_mask.expand(batch, -1)

    def forward(self, template_rgb: Tensor, template_tir: Tensor, search_rgb: Tensor, search_tir: Tensor) -> dict[str, Tensor]:
        """Normalised crops in, maps and the raw-peak box out (docs/model.md)."""
        self.check_inputs(template_rgb, template_tir, search_rgb, search_tir)
        mask = self.template_mask(template_rgb.shape[0])
        if self.stacked is not None:
            tokens = self.stacked.embed([template_rgb, template_tir], [search_rgb, search_tir])
            features = self.stacked(tokens, self.cfg, mask, self.fused_attention)
        else:
            tokens = [self.rgb_branch.embed(template_rgb, search_rgb), self.tir_branch.embed(template_tir, search_tir)]
            branches = [self.rgb_branch, self.tir_branch]
            features = run_lockstep(branches, tokens, self.cfg, mask, fused_attention=self.fused_attention).tokens
        fmap = head_input(features, self.cfg.search_feat**2, self.cfg.search_feat)
        maps = (self.fused_head if self.fused_head is not None else self.box_head)(fmap)
        maps["pred_boxes"] = self.box_head.decode(maps).unsqueeze(1)
        return maps
