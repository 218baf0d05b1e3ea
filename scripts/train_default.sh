#!/usr/bin/env bash
# Recipe of the bundled face model (fomm-face-256): prepare data, train, average, export.
# Runs unchanged on a CPU or a GPU (it picks the device; on a GPU pass BATCH=32 PRECISION=bf16),
# checkpoints every few minutes and resumes where it stopped when run again.
#
#   Stage 1: scripts/fomm-face-stage1-128.yaml, the fomm-face-256 networks trained at 128x128
#            (keypoint detector and dense motion still see 64x64, the generator costs a
#            quarter: ~2.2x faster per step on a CPU); keypoint separation, strong
#            equivariance transforms, pair motion, an L1 term on the eyes and mouth and
#            expressive pairs and landmark guidance of six keypoints (eye centres, mouth
#            corners, lips), from stored dlib landmarks (scripts/face_landmarks.py; see
#            MODEL_CARD.md).
#   Export:  the mean of stage 1's last AVERAGE checkpoints (epoch ends), as a 256x256 model
#            (scripts/export_default.py rebuilds the anti-alias kernels for 256x256).
#   Stage 2: optional (STEPS > 0): fine-tune at 256x256 with the fomm-face-256 preset (half the
#            learning rate), from the averaged weights; then export the mean of its checkpoints.
#
#   bash scripts/train_default.sh                                   # CPU: stage 1, export
#   INIT=fomm/weights/fomm-face-256.safetensors bash scripts/train_default.sh   # continue
#   STAGE1_STEPS=0 INIT=... STEPS=20000 BATCH=32 PRECISION=bf16 bash scripts/train_default.sh
# The shipped v3 is stage 2 alone from v2 (git show 0dc92e6:fomm/weights/fomm-face-256.safetensors),
# with the eyelid guidance and balanced expressive pairs below, exported as the mean of its epoch
# checkpoints at steps 1278-1917:
#   STAGE1_STEPS=0 INIT=/tmp/v2.safetensors STEPS=1917 AVERAGE=5 bash scripts/train_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEOS=${VIDEOS:-../shared/data/videos}
EXTRA=${EXTRA:-../shared/data/videos-extra}  # more identities (optional; at most 450 frames each)
DATA=${DATA:-data/faces}
RUN=${RUN:-runs/fomm-face-256}
STAGE1_STEPS=${STAGE1_STEPS:-2100}  # at 128x128 (175 steps per epoch); 0 skips stage 1
STEPS=${STEPS:-0}                   # stage 2 at 256x256; 0 skips it
BATCH=${BATCH:-4}
PRECISION=${PRECISION:-fp32}
WORKERS=${WORKERS:-1}
INIT=${INIT:-}                      # optional: start from these weights (fresh optimizers)
OUT=${OUT:-fomm/weights/fomm-face-256.safetensors}
AVERAGE=${AVERAGE:-9}               # checkpoints averaged into the exported file
REPEATS=${REPEATS:-15}              # passes over the clips per epoch (an epoch = 180 steps
                                    # at batch 4 with the 49 training clips)

[ -d "$DATA/train" ] || python scripts/prepare_face_data.py "$VIDEOS" "$DATA" --size 256
if [ -d "$EXTRA" ]; then  # skips clips already prepared; held-out identities go to test/
  python scripts/prepare_face_data.py "$EXTRA" "$DATA" --size 256 --max-frames 450 \
    --held-out dt_w011_front_surprised_level3_001 dt_w011_front_angry_level3_001 \
    sad_wda_bobmenendez_000 vrt_4
fi
python scripts/face_landmarks.py "$DATA"  # for --region-weight; skips clips already done

extras=(--ssim-weight 5 --separation-weight 5 --region-weight "${REGION_WEIGHT:-50}"
        --expressive-pairs "${EXPRESSIVE_PAIRS:-0.5}" --landmark-weight "${LANDMARK_WEIGHT:-10}"
        --eye-guides "${EYE_GUIDES:-lids}")
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
      --precision "$PRECISION" --seed 0 --max-steps "$steps" --repeats "$REPEATS" \
      "${extras[@]}" \
      ${start[@]+"${start[@]}"} "${common[@]}"
  fi
}

# export RUN_DIR: the mean of its last AVERAGE-1 epoch checkpoints and its latest one
export_mean() {
  shopt -s nullglob
  local ckpts=("$1"/[0-9]*-checkpoint.pth.tar)
  local keep=$(( AVERAGE - 1 < ${#ckpts[@]} ? AVERAGE - 1 : ${#ckpts[@]} ))
  python scripts/export_default.py "$OUT" "${ckpts[@]:${#ckpts[@]}-keep}" \
    "$1/checkpoint.pth.tar"
}

init=$INIT
if [ "$STAGE1_STEPS" -gt 0 ]; then
  train scripts/fomm-face-stage1-128.yaml "$RUN/stage1" "$STAGE1_STEPS" "$init"
  export_mean "$RUN/stage1"
  init=$OUT
fi
if [ "$STEPS" -gt 0 ]; then
  train fomm-face-256 "$RUN/stage2" "$STEPS" "$init"
  export_mean "$RUN/stage2"
fi
