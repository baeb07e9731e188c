#!/usr/bin/env bash
# The exact commands that produced models/ckd_small_synth.pt and its ablation (models/README.md).
# CPU, 2 threads; on the project's 2-vCPU machine (AMD EPYC) stage 0 takes ~20 min when the machine
# is otherwise idle, stage 1 ~40 min, stage 2 ~7 min; the ablation about 35 min more. Each stage resumes from
# out/train/<stage>/last.pt if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
CKD=${CKD:-.venv/bin/ckd-ros}
$CKD train config/train/synth_stage0.yaml            # teachers (RGB-only, TIR-only) from scratch
$CKD train config/train/synth_stage1.yaml            # coupled knowledge distillation
$CKD train config/train/synth_stage2.yaml            # MCE on, backbones frozen, fused head fine-tuned
cp out/train/synth_stage2/model.pt models/ckd_small_synth.pt
$CKD train config/train/synth_stage1_nodistill.yaml  # ablation: no style/content distillation
$CKD train config/train/synth_stage2_nodistill.yaml
