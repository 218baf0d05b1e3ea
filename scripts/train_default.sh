#!/usr/bin/env bash
# Recipe of the bundled face model (fomm-face-256): prepare data, train in two stages, export.
# Runs unchanged on a CPU or a GPU (it picks the device; on a GPU pass BATCH=32 PRECISION=bf16),
# checkpoints every few minutes and resumes where it stopped when run again.
#
#   Stage 1: scripts/fomm-face-stage1-128.yaml, the same networks trained at 128x128 (keypoint
#            detector and dense motion still see 64x64, the generator costs a quarter: ~2.2x
#            faster per step on a CPU). Keypoint separation keeps the keypoints spread.
#   Stage 2: fomm-face-256 at 256x256, initialised from stage 1 (anti-alias kernels rebuilt).
#
#   bash scripts/train_default.sh                                   # CPU: both stages, export
#   INIT=init.pth.tar bash scripts/train_default.sh                 # start stage 1 from weights
#   STAGE1_STEPS=0 STEPS=20000 BATCH=32 PRECISION=bf16 bash scripts/train_default.sh   # GPU
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEOS=${VIDEOS:-../shared/data/videos}
DATA=${DATA:-data/faces}
RUN=${RUN:-runs/fomm-face-256}
STAGE1_STEPS=${STAGE1_STEPS:-6000}  # at 128x128; 0 skips stage 1
STEPS=${STEPS:-1500}                # at 256x256
BATCH=${BATCH:-4}
PRECISION=${PRECISION:-fp32}
WORKERS=${WORKERS:-1}
INIT=${INIT:-}                      # optional: start from these weights (fresh optimizers)

[ -d "$DATA/train" ] || python scripts/prepare_face_data.py "$VIDEOS" "$DATA" --size 256

extras=(--ssim-weight 5 --separation-weight 5)
common=(--workers "$WORKERS" --save-every-minutes 5 --image-every 100 -q)

# train CONFIG RUN_DIR STEPS [INIT]: start, or resume the run until it has STEPS steps
train() {
  local config=$1 out=$2 steps=$3 init=${4:-}
  if [ -f "$out/checkpoint.pth.tar" ]; then
    python -m fomm train --resume "$out/checkpoint.pth.tar" --max-steps "$steps" "${common[@]}"
  else
    local start=()
    [ -n "$init" ] && start=(--init "$init")
    python -m fomm train --config "$config" --data "$DATA" --out "$out" --batch-size "$BATCH" \
      --precision "$PRECISION" --seed 0 --max-steps "$steps" "${extras[@]}" \
      ${start[@]+"${start[@]}"} "${common[@]}"
  fi
}

stage2_init=$INIT
if [ "$STAGE1_STEPS" -gt 0 ]; then
  train scripts/fomm-face-stage1-128.yaml "$RUN/stage1" "$STAGE1_STEPS" "$INIT"
  stage2_init=$RUN/stage1/checkpoint.pth.tar
fi
train fomm-face-256 "$RUN/stage2" "$STEPS" "$stage2_init"
python -m fomm convert "$RUN/stage2/checkpoint.pth.tar" fomm/weights/fomm-face-256.safetensors \
  --config fomm-face-256 --fp16
