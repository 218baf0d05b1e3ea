#!/usr/bin/env bash
# Recipe of the bundled face model (fomm-face-256): prepare data, train, export. Runs unchanged on
# a CPU or a GPU (it picks the device; on a GPU pass BATCH=32 PRECISION=bf16), checkpoints every
# few minutes and resumes where it stopped when run again.
#
#   bash scripts/train_default.sh            # prepare (once), train / resume, export
#   STEPS=20000 BATCH=32 PRECISION=bf16 bash scripts/train_default.sh   # on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
VIDEOS=${VIDEOS:-../shared/data/videos}
DATA=${DATA:-data/faces}
RUN=${RUN:-runs/fomm-face-256}
STEPS=${STEPS:-100000}
BATCH=${BATCH:-4}
PRECISION=${PRECISION:-fp32}
WORKERS=${WORKERS:-1}
INIT=${INIT:-}          # optional: start from these weights (fresh optimizers)

[ -d "$DATA/train" ] || python scripts/prepare_face_data.py "$VIDEOS" "$DATA" --size 256

common=(--max-steps "$STEPS" --workers "$WORKERS" --save-every-minutes 5 --image-every 100 -q)
if [ -f "$RUN/checkpoint.pth.tar" ]; then
  python -m fomm train --resume "$RUN/checkpoint.pth.tar" "${common[@]}"
else
  if [ -n "$INIT" ]; then
    start=(--init "$INIT")
  else
    start=()  # blend_output keeps results sharp from the start: no autoencoder pretraining
  fi
  python -m fomm train --config fomm-face-256 --data "$DATA" --out "$RUN" \
    --batch-size "$BATCH" --precision "$PRECISION" --seed 0 \
    --ssim-weight 5 ${start[@]+"${start[@]}"} "${common[@]}"
fi
python -m fomm convert "$RUN/checkpoint.pth.tar" fomm/weights/fomm-face-256.safetensors \
  --config fomm-face-256 --fp16
