"""Candidate token elimination (OSTrack CE) and its multi-modal form (CKD's MCE).

At an elimination block, search tokens that the template's centre token attends to least are
dropped. In MCE one decision, taken from the element-wise max of both branches' attention, is
applied to both branches, so they keep the same search positions in the same order (docs/model.md, Token elimination).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def template_center_mask(template_feat: int, batch: int = 1, device: torch.device | str = "cpu") -> Tensor:
    """The CTR_POINT template mask: one True at the centre cell of the template grid.

    For the official 8x8 grid this is flat index 27 (row 3, column 3).
    """
    c = template_feat // 2 - 1
    mask = torch.zeros(batch, template_feat * template_feat, dtype=torch.bool, device=device)
    mask[:, c * template_feat + c] = True
    return mask


def keep_count(num_search: int, keep_ratio: float) -> int:
    """ceil(ratio · Ls) in Python floats: 256 → 180 → 126 → 89 at 0.7, as the official code."""
    return math.ceil(keep_ratio * num_search)


def search_scores(attn: Tensor, num_template: int, template_mask: Tensor | None) -> Tensor:
    """Per search token, the attention paid to it by the selected template rows.

    ``attn`` (B, H, N, N) → (B, Ls). Mean over the selected template rows first, then over heads:
    the official order, which matters for bit-exact ranking. The selected rows are summed with the
    others zeroed rather than picked by boolean indexing, which would wait for the GPU (nonzero)
    in the middle of the frame; for the official one-row mask (CTR_POINT) that is exact.
    """
    a_ts = attn[:, :, :num_template, num_template:]
    if template_mask is None:
        return a_ts.mean(dim=2).mean(dim=1)
    rows = template_mask[:, None, :, None]  # (B, 1, Lz, 1)
    count = template_mask.sum(dim=1, dtype=a_ts.dtype)[:, None, None]
    return (a_ts.masked_fill(~rows, 0).sum(dim=2) / count).mean(dim=1)


def rank_search_tokens(scores: Tensor, keep: int) -> tuple[Tensor, Tensor]:
    """Indices (into the current search tokens) of the kept ones, by descending score, and the rest."""
    order = torch.sort(scores, dim=1, descending=True).indices
    return order[:, :keep], order[:, keep:]


def kept_indices(
    attn: Sequence[Tensor], num_template: int, template_mask: Tensor | None, keep: int, mode: str, num_deciders: int
) -> list[Tensor]:
    """Per branch, the indices (B, keep) of the search tokens that survive this block.

    ``mce``: one decision from the element-wise max of the first ``num_deciders`` attention maps,
    shared by every branch (same positions, same order); otherwise (CE) each branch decides alone.
    """
    if mode == "mce":
        shared = attn[0]
        for a in attn[1:num_deciders]:
            shared = torch.maximum(shared, a)
        return [rank_search_tokens(search_scores(shared, num_template, template_mask), keep)[0]] * len(attn)
    return [rank_search_tokens(search_scores(a, num_template, template_mask), keep)[0] for a in attn]


def gather_search(tokens: Tensor, num_template: int, keep_idx: Tensor) -> Tensor:
    """Template tokens unchanged, then the kept search tokens in ``keep_idx`` order."""
    b, _, c = tokens.shape
    kept = tokens[:, num_template:].gather(1, keep_idx.unsqueeze(-1).expand(b, -1, c))
    return torch.cat([tokens[:, :num_template], kept], dim=1)


def scatter_search(search: Tensor, global_index: Tensor, num_search: int) -> Tensor:
    """Put surviving search tokens back at their original raster positions; the rest are exact zeros."""
    b, _, c = search.shape
    out = search.new_zeros(b, num_search, c)
    return out.scatter(1, global_index.unsqueeze(-1).expand(b, -1, c), search)
