"""The CKD training model: students + fused head (the inference keys) plus teachers and their heads.

Attribute names follow the official training model (docs/checkpoints.md, "The training keys"), so
its ``state_dict`` has the 878 official keys at ViT-B size and an inference model is simply the
``rgb_branch``/``tir_branch``/``box_head`` subset. The heads are whatever ``model/head.py`` builds.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ckd_ros.errors import ConfigError
from ckd_ros.model import BoxHead, CKDNet, ModelConfig, ViTBranch, build_head, head_input, run_lockstep
from ckd_ros.model.elimination import template_center_mask

STUDENT_PREFIXES = ("rgb_branch.", "tir_branch.", "box_head.")


def _maps(head: BoxHead, tokens: list[Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    out = head(head_input(tokens, cfg.search_feat**2, cfg.search_feat))
    out["pred_boxes"] = head.decode(out).unsqueeze(1)
    return out


class CKDTrainingNet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.rgb_branch = ViTBranch(cfg)
        self.tir_branch = ViTBranch(cfg)
        self.box_head = build_head(2 * cfg.embed_dim, cfg)
        self.teacher_rgb = ViTBranch(cfg)
        self.teacher_tir = ViTBranch(cfg)
        self.box_head_v = build_head(cfg.embed_dim, cfg)
        self.box_head_i = build_head(cfg.embed_dim, cfg)
        self.register_buffer("ce_template_mask", template_center_mask(cfg.template_feat), persistent=False)

    def _mask(self, batch: int) -> Tensor | None:
        return None if self.cfg.ce_template_range == "all" else self.ce_template_mask.expand(batch, -1)

    def teachers(self, z_rgb: Tensor, z_tir: Tensor, x_rgb: Tensor, x_tir: Tensor, collect: bool = False) -> dict:
        """Both teachers on unmasked inputs, each with its own single-modality head; no elimination."""
        cfg = self.cfg.replace(ce_mode="none")
        out = {}
        for name, branch, head, z, x in (
            ("rgb", self.teacher_rgb, self.box_head_v, z_rgb, x_rgb),
            ("tir", self.teacher_tir, self.box_head_i, z_tir, x_tir),
        ):
            run = run_lockstep([branch], [branch.embed(z, x)], cfg, None, num_deciders=1, collect_blocks=collect)
            out[name] = _maps(head, run.tokens, cfg)
            out[f"{name}_blocks"] = run.block_outputs[0] if collect else None
        return out

    def students(
        self,
        z_rgb: Tensor,
        z_tir: Tensor,
        x_rgb: Tensor,
        x_tir: Tensor,
        search_keep: Tensor | None = None,
        eliminate: bool = False,
        collect: bool = False,
    ) -> dict:
        """Both students in lockstep (masked search tokens when ``search_keep`` is given) → fused head."""
        cfg = self.cfg if eliminate else self.cfg.replace(ce_mode="none")
        tokens = [self.rgb_branch.embed(z_rgb, x_rgb, search_keep), self.tir_branch.embed(z_tir, x_tir, search_keep)]
        run = run_lockstep([self.rgb_branch, self.tir_branch], tokens, cfg, self._mask(z_rgb.shape[0]), collect_blocks=collect)
        out = {"fused": _maps(self.box_head, run.tokens, cfg)}
        out["rgb_blocks"], out["tir_blocks"] = run.block_outputs if collect else (None, None)
        return out

    def inference_state_dict(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(STUDENT_PREFIXES)}

    def to_inference(self) -> CKDNet:
        """The 394-key-shaped inference network with these students and fused head."""
        net = CKDNet(self.cfg)
        net.load_state_dict(self.inference_state_dict(), strict=True)
        return net.eval()

    @torch.no_grad()
    def init_students_from_teachers(self) -> None:
        """Stage 1 start: each student copies its own-modality teacher; the fused head starts from
        both teacher heads, its response the sum of the two (``BoxHead.merge_from``)."""
        self.rgb_branch.load_state_dict(self.teacher_rgb.state_dict())
        self.tir_branch.load_state_dict(self.teacher_tir.state_dict())
        self.box_head.merge_from(self.box_head_v, self.box_head_i)


class TeacherNet(nn.Module):
    """One teacher backbone and its single-modality head, behind the CKDNet call signature, so the
    tracker can run it as an RGB-only or TIR-only baseline (a ``TrackedModel``: ``fused_attention``
    as on ``CKDNet``; a teacher eliminates no tokens, so with it on every block uses SDPA)."""

    def __init__(self, net: CKDTrainingNet, modality: str) -> None:
        super().__init__()
        if modality not in ("rgb", "tir"):
            raise ValueError(f"modality must be 'rgb' or 'tir', got {modality!r}")
        self.cfg = net.cfg.replace(ce_mode="none")
        self.modality = modality
        self.branch = net.teacher_rgb if modality == "rgb" else net.teacher_tir
        self.box_head: BoxHead = net.box_head_v if modality == "rgb" else net.box_head_i
        self.fused_attention = False

    def stack_branches(self, enable: bool = True) -> None:
        """The tracker's ``stack_branches`` switch: a single branch has nothing to stack."""
        if enable:
            raise ConfigError(f"stack_branches needs a two-branch CKD model; this is the {self.modality.upper()} teacher")

    def quantize_int8(self) -> None:
        """The tracker's int8 switch: teachers are fp32 evaluation baselines."""
        raise ConfigError(f"int8 is for the CKD inference network; run the {self.modality.upper()} teacher in fp32")

    def forward(self, template_rgb: Tensor, template_tir: Tensor, search_rgb: Tensor, search_tir: Tensor) -> dict[str, Tensor]:
        z, x = (template_rgb, search_rgb) if self.modality == "rgb" else (template_tir, search_tir)
        tokens = [self.branch.embed(z, x)]
        run = run_lockstep([self.branch], tokens, self.cfg, None, num_deciders=1, fused_attention=self.fused_attention)
        return _maps(self.box_head, run.tokens, self.cfg)
