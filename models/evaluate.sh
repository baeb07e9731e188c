#!/usr/bin/env bash
# The evaluation table of models/README.md: every tracker on the held-out synthetic suite.
set -euo pipefail
cd "$(dirname "$0")/.."
CKD=${CKD:-.venv/bin/ckd-ros}
SUITE=out/synth_suite
R=out/eval/synth
[ -d $SUITE ] || $CKD eval make-suite $SUITE
run() { $CKD eval run --dataset synthetic --root $SUITE --device cpu --float-boxes "$@"; }
run --out "$R/CKD (shipped)" --checkpoint models/ckd_small_synth.pt
run --out "$R/CKD w-o distillation" --checkpoint out/train/synth_stage2_nodistill/model.pt
run --out "$R/RGB teacher" --tracker teacher-rgb --checkpoint out/train/synth_stage1/last.pt
run --out "$R/TIR teacher" --tracker teacher-tir --checkpoint out/train/synth_stage1/last.pt
run --out "$R/MIL (RGB)" --tracker mil-rgb
run --out "$R/MIL (TIR)" --tracker mil-tir
run --out "$R/constant box" --tracker constant
$CKD eval score --dataset synthetic --root $SUITE --plot $R/plots.png --results "$R"/*/ | tee $R/table.md
