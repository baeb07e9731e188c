"""An independent, official-structure formulation of the CKD forward, for parity tests only.

It follows the shape of the official code (docs/model.md): each branch advances through a block with its
own loop state (tokens, global index, removed indices), OSTrack's ``candidate_elimination`` is one
function that also returns the removed originals, MCE hands one branch's decision to the other, and
removed tokens are re-inserted as ``zeros_like(cat([x, pad])).scatter_(cat([kept, removed]))``. It
reuses only the *parameters* of ``ckd_ros.model.CKDNet``, never its forward code.
"""

from __future__ import annotations

import math

import torch


def _attention(blk, x):
    b, n, c = x.shape
    a = blk.attn
    qkv = a.qkv(blk.norm1(x)).reshape(b, n, 3, a.num_heads, c // a.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    attn = ((q @ k.transpose(-2, -1)) * a.scale).softmax(dim=-1)
    return x + a.proj((attn @ v).transpose(1, 2).reshape(b, n, c)), attn


def candidate_elimination(attn, tokens, lens_t, keep_ratio, global_index, box_mask_z, topk_idx=None):
    lens_s = attn.shape[-1] - lens_t
    bs, hn, _, _ = attn.shape
    lens_keep = math.ceil(keep_ratio * lens_s)
    if lens_keep == lens_s:
        return tokens, global_index, None, None
    if topk_idx is None:
        attn_t = attn[:, :, :lens_t, lens_t:]
        if box_mask_z is not None:
            m = box_mask_z.unsqueeze(1).unsqueeze(-1).expand(-1, attn_t.shape[1], -1, attn_t.shape[-1])
            attn_t = attn_t[m].view(bs, hn, -1, lens_s)
        attn_t = attn_t.mean(dim=2).mean(dim=1)
        _, indices = torch.sort(attn_t, dim=1, descending=True)
        topk_idx, non_topk_idx = indices[:, :lens_keep], indices[:, lens_keep:]
    else:
        all_idx = torch.arange(lens_s).expand(bs, lens_s)
        non_topk_idx = torch.stack([all_idx[b][~torch.isin(all_idx[b], topk_idx[b])] for b in range(bs)])
    keep_index = global_index.gather(dim=1, index=topk_idx)
    removed_index = global_index.gather(dim=1, index=non_topk_idx)
    tokens_t, tokens_s = tokens[:, :lens_t], tokens[:, lens_t:]
    b, _, c = tokens_s.shape
    attentive = tokens_s.gather(dim=1, index=topk_idx.unsqueeze(-1).expand(b, -1, c))
    return torch.cat([tokens_t, attentive], dim=1), keep_index, removed_index, topk_idx


def reference_forward(model, z_v, z_i, x_v, x_i, mode="mce", ce_loc=(3, 6, 9), keep=0.7, box_mask_z=None):
    """Returns (score_map, size_map, offset_map, pred_boxes) as the official model computes them."""
    branches = [model.rgb_branch, model.tir_branch]
    state = []
    for br, z, x in ((branches[0], z_v, x_v), (branches[1], z_i, x_i)):
        zt = br.patch_embed(z)
        zt += br.pos_embed_z
        xt = br.patch_embed(x)
        xt += br.pos_embed_x
        b = z.shape[0]
        gs = torch.linspace(0, xt.shape[1] - 1, xt.shape[1]).unsqueeze(0).repeat(b, 1).long()
        state.append({"x": torch.cat([zt, xt], dim=1), "gs": gs, "removed": [], "lz": zt.shape[1], "lx": xt.shape[1]})
    for i in range(len(branches[0].blocks)):
        attns = []
        for br, st in zip(branches, state):
            st["x"], a = _attention(br.blocks[i], st["x"])
            attns.append(a)
        if i in ce_loc:
            if mode == "mce":  # the TIR branch decides from the max map and hands its topk to RGB
                a = torch.maximum(attns[0], attns[1])
                st = state[1]
                st["x"], st["gs"], rem, topk = candidate_elimination(a, st["x"], st["lz"], keep, st["gs"], box_mask_z)
                st["removed"].append(rem)
                st = state[0]
                st["x"], st["gs"], rem, _ = candidate_elimination(a, st["x"], st["lz"], keep, st["gs"], box_mask_z, topk)
                st["removed"].append(rem)
            else:
                for st, a in zip(state, attns):
                    st["x"], st["gs"], rem, _ = candidate_elimination(a, st["x"], st["lz"], keep, st["gs"], box_mask_z)
                    st["removed"].append(rem)
        for br, st in zip(branches, state):
            blk = br.blocks[i]
            st["x"] = st["x"] + blk.mlp(blk.norm2(st["x"]))
    feats = []
    for br, st in zip(branches, state):
        x = br.norm(st["x"])
        z, x = x[:, : st["lz"]], x[:, st["lz"] :]
        removed = [r for r in st["removed"] if r is not None]
        if removed:
            cat = torch.cat(removed, dim=1)
            b, _, c = x.shape
            x = torch.cat([x, torch.zeros([b, st["lx"] - x.shape[1], c])], dim=1)
            index_all = torch.cat([st["gs"], cat], dim=1)
            x = torch.zeros_like(x).scatter_(dim=1, index=index_all.unsqueeze(-1).expand(b, -1, c).to(torch.int64), src=x)
        feats.append(torch.cat([z, x], dim=1))
    f = torch.cat(feats, dim=-1)
    lx = state[0]["lx"]
    feat_sz = math.isqrt(lx)
    opt = f[:, -lx:].unsqueeze(-1).permute((0, 3, 2, 1)).contiguous()
    bs, nq, c, _hw = opt.size()
    fmap = opt.view(-1, c, feat_sz, feat_sz)
    h = model.box_head

    def run(name, t):
        for k in range(1, 6):
            t = getattr(h, f"conv{k}_{name}")(t)
        return t

    score = torch.clamp(run("ctr", fmap).sigmoid_(), min=1e-4, max=1 - 1e-4)
    size = torch.clamp(run("size", fmap).sigmoid_(), min=1e-4, max=1 - 1e-4)
    offset = run("offset", fmap)
    _, idx = torch.max(score.flatten(1), dim=1, keepdim=True)
    idx_y, idx_x = idx // feat_sz, idx % feat_sz
    idx = idx.unsqueeze(1).expand(idx.shape[0], 2, 1)
    sz = size.flatten(2).gather(dim=2, index=idx)
    off = offset.flatten(2).gather(dim=2, index=idx).squeeze(-1)
    box = torch.cat(
        [(idx_x.to(torch.float) + off[:, :1]) / feat_sz, (idx_y.to(torch.float) + off[:, 1:]) / feat_sz, sz.squeeze(-1)],
        dim=1,
    )
    return score, size, offset, box.view(bs, nq, 4)
