"""One CKD student (or teacher) branch: a pre-norm ViT over [template | search] tokens.

Attribute names are the official checkpoint keys (``blocks.3.attn.qkv.weight`` …). A block is
split into its attention half and its MLP half because candidate elimination happens between the
two, and in MCE the decision needs both branches' attention at the same block; the network
(``ckd.py``) drives the branches block by block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ckd_ros.model.config import ModelConfig


class DropPath(nn.Module):
    """Stochastic depth per sample; identity at inference."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def attend(q: Tensor, k: Tensor, v: Tensor, scale: float, need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """Multi-head attention core: (B, H, N, d) in, output and (when asked) the post-softmax map.

    With ``need_weights`` the maths is the official order (q·kᵀ·scale, softmax, ·v), which is
    bit-exact against the official model on CPU; without it the fused SDPA kernel is used, equal up
    to float rounding and much faster on GPU.
    """
    if not need_weights:
        return F.scaled_dot_product_attention(q, k, v), None
    attn = ((q @ k.transpose(-2, -1)) * scale).softmax(dim=-1)
    return attn @ v, attn


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, need_weights: bool = True) -> tuple[Tensor, Tensor | None]:
        """Returns the output and, when asked, the post-softmax map (B, H, N, N) (see ``attend``)."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out, attn = attend(*qkv.unbind(0), self.scale, need_weights)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def attention_half(self, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        out, attn = self.attn(self.norm1(x), need_weights)
        return x + self.drop_path(out), attn

    def mlp_half(self, x: Tensor) -> Tensor:
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp_half(self.attention_half(x, need_weights=False)[0])


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTBranch(nn.Module):
    """ViT-B/16-style backbone of one modality (``rgb_branch``, ``tir_branch``, teachers)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))  # unused; kept for strict loading
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.legacy_pos_tokens, d))  # unused; likewise
        self.pos_embed_z = nn.Parameter(torch.zeros(1, cfg.template_feat**2, d))
        self.pos_embed_x = nn.Parameter(torch.zeros(1, cfg.search_feat**2, d))
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(d, cfg.num_heads, cfg.mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        for t in (self.cls_token, self.pos_embed, self.pos_embed_z, self.pos_embed_x):
            nn.init.trunc_normal_(t, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def embed(self, z: Tensor, x: Tensor, search_keep: Tensor | None = None) -> Tensor:
        """Template and search tokens with their position embeddings, template first.

        ``search_keep`` (B, Ls) bool implements masked modelling: a dropped search token's patch
        embedding is zeroed before the position embedding is added (docs/training.md, Masking).
        """
        z = self.patch_embed(z) + self.pos_embed_z
        x = self.patch_embed(x)
        if search_keep is not None:
            x = x * search_keep.unsqueeze(-1).to(x.dtype)
        x = x + self.pos_embed_x
        return torch.cat([z, x], dim=1)
