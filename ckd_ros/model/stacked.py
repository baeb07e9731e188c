"""Both branches as one batched computation: weights stacked on a leading modality axis.

The RGB and TIR branches have the same shapes block for block, and under MCE they also keep the
same search positions, so every linear layer of the two branches is one ``baddbmm`` over stacked
weights (the patch embedding too, as a matmul over flattened patches) and every attention one
kernel over a batch of 2·B. That halves the number of kernels per frame, which is what limits a
batch-1 forward on a GPU (launch-bound) and costs little on a CPU.
Plain CE (per-branch decisions) stacks too: the kept counts are equal, only the indices differ.

The stacked weights are copies taken when the model is switched to this path (``CKDNet.
stack_branches``); they follow ``.to()`` like any buffer, but not later edits of the parameters
(call ``stack_branches`` again after loading new weights). Results equal the per-branch path up to
float rounding (batched and single matmuls may sum in a different order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ckd_ros.model.config import ModelConfig
from ckd_ros.model.elimination import gather_search, keep_count, kept_indices, scatter_search
from ckd_ros.model.vit import ViTBranch, attend

# Per block: (buffer name, how to read it from one branch's block). Linear weights keep the
# nn.Linear (out, in) layout; baddbmm reads them transposed without a copy.
_BLOCK_TENSORS = {
    "norm1_w": lambda b: b.norm1.weight,
    "norm1_b": lambda b: b.norm1.bias,
    "qkv_w": lambda b: b.attn.qkv.weight,
    "qkv_b": lambda b: b.attn.qkv.bias,
    "proj_w": lambda b: b.attn.proj.weight,
    "proj_b": lambda b: b.attn.proj.bias,
    "norm2_w": lambda b: b.norm2.weight,
    "norm2_b": lambda b: b.norm2.bias,
    "fc1_w": lambda b: b.mlp.fc1.weight,
    "fc1_b": lambda b: b.mlp.fc1.bias,
    "fc2_w": lambda b: b.mlp.fc2.weight,
    "fc2_b": lambda b: b.mlp.fc2.bias,
}


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    """(M, …); 1-D tensors (biases, norm affines) become (M, 1, D) so they broadcast over rows."""
    out = torch.stack([t.detach() for t in tensors])
    return out.unsqueeze(1) if out.ndim == 2 else out.contiguous()


def _linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x (M, R, in) · weightᵀ (M, in, out) + bias (M, 1, out)."""
    return torch.baddbmm(bias, x, weight.transpose(1, 2))


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    return torch.addcmul(bias, F.layer_norm(x, x.shape[-1:], eps=eps), weight)


class StackedBlock(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module], num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = blocks[0].attn.scale
        self.eps = blocks[0].norm1.eps
        for name, read in _BLOCK_TENSORS.items():
            self.register_buffer(name, _stack([read(b) for b in blocks]), persistent=False)

    def attention_half(self, x: Tensor, batch: int, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """x (M, B·N, C) → same, and the attention maps (M·B, H, N, N) when asked."""
        m, rows, c = x.shape
        n, h = rows // batch, self.num_heads
        qkv = _linear(_layer_norm(x, self.norm1_w, self.norm1_b, self.eps), self.qkv_w, self.qkv_b)
        q, k, v = qkv.view(m * batch, n, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        out, attn = attend(q, k, v, self.scale, need_weights)
        out = out.transpose(1, 2).reshape(m, rows, c)
        return x + _linear(out, self.proj_w, self.proj_b), attn

    def mlp_half(self, x: Tensor) -> Tensor:
        y = _linear(_layer_norm(x, self.norm2_w, self.norm2_b, self.eps), self.fc1_w, self.fc1_b)
        return x + _linear(F.gelu(y), self.fc2_w, self.fc2_b)


def patchify(images: Tensor, patch: int) -> Tensor:
    """(B, C, H, W) → (B, H/p · W/p, C·p·p) in raster order, each patch flattened as a conv weight
    (channel, row, column), so a stride-p conv equals a matmul with the flattened weight."""
    b, c, h, w = images.shape
    x = images.view(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


class StackedBranches(nn.Module):
    """The inference-time lockstep of ``ckd.run_lockstep`` for branches of one shape, batched."""

    def __init__(self, branches: Sequence[ViTBranch], cfg: ModelConfig) -> None:
        super().__init__()
        self.num_branches = len(branches)
        self.patch = cfg.patch_size
        self.register_buffer("patch_w", _stack([br.patch_embed.proj.weight.flatten(1) for br in branches]), persistent=False)
        self.register_buffer("patch_b", _stack([br.patch_embed.proj.bias for br in branches]), persistent=False)
        pos = [torch.cat([br.pos_embed_z, br.pos_embed_x], dim=1) for br in branches]  # (1, Lz+Ls, C) each
        self.register_buffer("pos", _stack(pos), persistent=False)
        self.blocks = nn.ModuleList(StackedBlock([br.blocks[i] for br in branches], cfg.num_heads) for i in range(cfg.depth))
        self.register_buffer("norm_w", _stack([br.norm.weight for br in branches]), persistent=False)
        self.register_buffer("norm_b", _stack([br.norm.bias for br in branches]), persistent=False)
        self.eps = branches[0].norm.eps

    def embed(self, templates: Sequence[Tensor], searches: Sequence[Tensor]) -> list[Tensor]:
        """Per-branch (B, Lz+Ls, C) tokens as ``ViTBranch.embed`` gives them, with the patch
        projection of every branch, template and search patches together, as one batched matmul
        (equal up to float rounding; four convolutions measured slower on CPU, README "Speed")."""
        patches = torch.stack(
            [
                torch.cat([patchify(z, self.patch), patchify(x, self.patch)], dim=1)
                for z, x in zip(templates, searches, strict=True)
            ]
        )
        m, b, n, k = patches.shape
        tokens = _linear(patches.view(m, b * n, k), self.patch_w, self.patch_b).view(m, b, n, -1) + self.pos
        return list(tokens.unbind(0))

    def forward(
        self, tokens: Sequence[Tensor], cfg: ModelConfig, template_mask: Tensor | None, fused_attention: bool
    ) -> list[Tensor]:
        """Per-branch (B, Lz+Ls, C) tokens in; per-branch final tokens out (removed search → zeros).

        Under MCE the decision uses the max over all stacked branches (at inference: the two
        students, as ``run_lockstep`` with ``num_deciders=2``).
        """
        m = self.num_branches
        lz, ls = cfg.template_feat**2, cfg.search_feat**2
        batch, _, c = tokens[0].shape
        x = torch.stack(list(tokens))  # (M, B, N, C)
        kept = torch.arange(ls, device=x.device).expand(m * batch, ls)
        elim_layers = set(cfg.elimination_layers)
        for i, block in enumerate(self.blocks):
            n = x.shape[2]
            keep = keep_count(n - lz, cfg.ce_keep_ratio)
            eliminate = i in elim_layers and keep < n - lz
            y, attn = block.attention_half(x.view(m, batch * n, c), batch, eliminate or not fused_attention)
            if eliminate:
                per_branch = attn.view(m, batch, *attn.shape[1:]).unbind(0)
                idx = torch.cat(kept_indices(per_branch, lz, template_mask, keep, cfg.ce_mode, num_deciders=m))
                y = gather_search(y.view(m * batch, n, c), lz, idx)
                kept = kept.gather(1, idx)
                n = lz + keep
            x = block.mlp_half(y.view(m, batch * n, c)).view(m, batch, n, c)
        x = _layer_norm(x.view(m, -1, c), self.norm_w, self.norm_b, self.eps).view(m * batch, -1, c)
        if x.shape[1] - lz < ls:
            x = torch.cat([x[:, :lz], scatter_search(x[:, lz:], kept, ls)], dim=1)
        return list(x.view(m, batch, lz + ls, c).unbind(0))
