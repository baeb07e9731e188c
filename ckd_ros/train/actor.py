"""The CKD actor: owns the method's losses for each stage; the trainer loop stays generic.

* stage 0 — single-modality teachers (each backbone with its own head) on tracking loss only: our
  substitute for the DropTrack-pretrained teachers, which cannot be downloaded here;
* stage 1 — CKD: fused students on masked search tokens, tracking loss on the fused head, style
  distillation between the students, content distillation from each own-modality teacher, and the
  teachers' own tracking losses (docs/training.md "Losses");
* stage 2 — MCE on, backbones frozen, the fused head fine-tuned on tracking loss. The teachers
  are not run: with frozen backbones their losses cannot change the students or the fused head
  (the official code computes them anyway), so skipping them changes nothing but the time.

The actor is an ``nn.Module`` holding the net: the generic trainer wraps *it* in DDP, so the forward
that produces the loss goes through DDP and the gradients are averaged across ranks (calling the
net's own methods past a DDP wrapper would silently skip the all-reduce).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ckd_ros.train.losses import content_loss, style_loss, tracking_loss
from ckd_ros.train.network import CKDTrainingNet


@dataclass
class LossConfig:
    giou: float = 2.0
    l1: float = 5.0
    focal: float = 1.0  # weight of the box head's own term (the CENTER head's is its focal loss)
    style: float = 0.01
    content: float = 0.1
    stop_style_gradient: bool = False
    stop_content_gradient: bool = True
    teacher_tracking: bool = True  # stage 1: also train the teachers on their own heads


class CKDActor(nn.Module):
    # the statistics worth watching on the progress bar (the trainer shows what it is told)
    progress_keys = ("loss", "iou", "style", "content", "t_rgb_iou", "t_tir_iou")

    def __init__(self, net: CKDTrainingNet, loss: LossConfig, stage: int) -> None:
        super().__init__()
        if stage not in (0, 1, 2):
            raise ValueError(f"stage must be 0, 1 or 2, got {stage}")
        self.net, self.loss, self.stage = net, loss, stage

    def _trk(self, out: dict[str, Tensor], gt: Tensor) -> tuple[Tensor, dict[str, float]]:
        return tracking_loss(out, gt, self.loss.giou, self.loss.l1, self.loss.focal)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        net, cfg = self.net, self.loss
        z_rgb, z_tir, x_rgb, x_tir = (batch[k] for k in ("template_rgb", "template_tir", "search_rgb", "search_tir"))
        gt = batch["search_anno"]
        stats: dict[str, float] = {}
        total = gt.new_zeros(())
        need_teachers = self.stage == 0 or (self.stage == 1 and (cfg.content > 0 or cfg.teacher_tracking))
        teachers = (
            net.teachers(z_rgb, z_tir, x_rgb, x_tir, collect=self.stage == 1 and cfg.content > 0) if need_teachers else None
        )
        if teachers is not None and (self.stage == 0 or cfg.teacher_tracking):
            for name in ("rgb", "tir"):
                loss, terms = self._trk(teachers[name], gt)
                total = total + loss
                stats[f"t_{name}"] = float(loss.detach())
                stats[f"t_{name}_iou"] = terms["iou"]
        if self.stage >= 1:
            keep = batch.get("search_keep") if self.stage == 1 else None
            students = net.students(
                z_rgb,
                z_tir,
                x_rgb,
                x_tir,
                search_keep=keep,
                eliminate=self.stage == 2,
                collect=self.stage == 1 and (cfg.style > 0 or cfg.content > 0),
            )
            loss, terms = self._trk(students["fused"], gt)
            total = total + loss
            stats.update(fused=float(loss.detach()), **terms)  # iou, giou, l1 and the head's own term (CENTER: focal)
            if self.stage == 1 and cfg.style > 0:
                s = style_loss(students["rgb_blocks"], students["tir_blocks"], cfg.stop_style_gradient)
                total = total + cfg.style * s
                stats["style"] = float(s.detach())
            if self.stage == 1 and cfg.content > 0:
                c = content_loss(teachers["rgb_blocks"], students["rgb_blocks"], cfg.stop_content_gradient) + content_loss(
                    teachers["tir_blocks"], students["tir_blocks"], cfg.stop_content_gradient
                )
                total = total + cfg.content * c
                stats["content"] = float(c.detach())
        stats["loss"] = float(total.detach())
        if "bad_frames" in batch:  # frames the loader could not decode (their sequence was dropped)
            stats["bad_frames"] = float(torch.as_tensor(batch["bad_frames"]).sum())
        return total, stats
