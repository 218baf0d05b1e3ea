#!/usr/bin/env python
"""Export the bundled face model: average checkpoints of one run, write fp16 fomm-face-256.

The weights of checkpoints along one run (for example the epoch checkpoints of its second half)
are averaged (floating-point tensors; a stochastic-weight average, steadier than any single
checkpoint of a batch-4 run), loaded into the ``--config`` networks with the anti-alias kernels
rebuilt for that config's scale factors (so stage-1 weights trained at 128x128 export as a
256x256 model), and written as one fp16 safetensors file with the config embedded.

    python scripts/export_default.py fomm/weights/fomm-face-256.safetensors \
        runs/fomm-face-256/stage1/000000{05..11}-checkpoint.pth.tar
"""

from __future__ import annotations

import argparse
import sys

import torch

from fomm.checkpoints import load_networks, read_checkpoint, save_checkpoint
from fomm.config import load_config
from fomm.errors import FommError
from fomm.models import build_models


def average_states(paths: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """Mean of the kp detector's and generator's floating-point tensors over ``paths``."""
    states = [read_checkpoint(p).state for p in paths]
    mean: dict[str, dict[str, torch.Tensor]] = {}
    for net in ("kp_detector", "generator"):
        last = states[-1][net]
        for other, path in zip(states, paths):
            if set(other[net]) != set(last):
                raise FommError(f"{path}: its {net} differs from {paths[-1]}'s")
        mean[net] = {k: (sum(s[net][k].float() for s in states) / len(states))
                     if v.is_floating_point() else v for k, v in last.items()}
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--config", default="fomm-face-256")
    parser.add_argument("--fp32", action="store_true", help="keep float32 (default fp16)")
    args = parser.parse_args()
    try:
        config = load_config(args.config).model
        models = build_models(config)
        state = average_states(args.checkpoints)
        load_networks(models, state, "averaged checkpoints", rebuild_kernels=True)
        save_checkpoint(args.out, models, config, None if args.fp32 else torch.float16)
    except FommError as exc:
        sys.exit(f"error: {exc}")
    print(f"wrote {args.out}: mean of {len(args.checkpoints)} checkpoints, config {args.config}")


if __name__ == "__main__":
    main()
