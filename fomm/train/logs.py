"""The run folder of ``fomm train``: config copy, log.txt, progress bar, TensorBoard, image grids.

Only rank 0 writes; on other ranks every method is a no-op.  Layout::

    <run>/config.yaml        the config text as given (options.json: the command-line options)
    <run>/log.txt            one line per epoch with mean losses (the original's format) + events
    <run>/tb/                TensorBoard scalars (losses, lr, samples/s) and image grids
    <run>/train-vis/*.png    the same image grids
    <run>/checkpoint.pth.tar latest checkpoint; NNNNNNNN-checkpoint.pth.tar every checkpoint_freq
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fomm.media.image import to_frames, write_image
from fomm.train.evaluate import draw_keypoints


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix_str(self, text: str) -> None: ...
    def close(self) -> None: ...


class RunLogger:
    """Progress and logs of one training process (silent unless ``active``)."""

    def __init__(self, run_dir: Path, active: bool, tensorboard: bool = True,
                 progress: bool = True) -> None:
        self.run_dir = run_dir
        self.active = active
        self.use_tensorboard = tensorboard
        self.show_progress = progress
        self.writer = None
        self.log_file = None
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.started = time.monotonic()

    def start(self, config_text: str, options: dict[str, Any], source: str, progress: Any,
              items: int, steps_per_epoch: int, world_size: int) -> None:
        if not self.active:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if config_text:
            (self.run_dir / "config.yaml").write_text(config_text, encoding="utf-8")
        (self.run_dir / "options.json").write_text(json.dumps(options, indent=2) + "\n",
                                                   encoding="utf-8")
        self.log_file = open(self.run_dir / "log.txt", "a", encoding="utf-8")  # noqa: SIM115
        if self.use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=progress.step or None)
        self.note(f"run {self.run_dir}: config {source}, {items} items per epoch, "
                  f"{steps_per_epoch} steps per epoch, {world_size} process(es); starting at "
                  f"epoch {progress.epoch}, batch {progress.batch}, step {progress.step}")

    def note(self, message: str, echo: bool = True) -> None:
        if not self.active:
            return
        if echo:
            tqdm.write(message)
        if self.log_file is not None:
            self.log_file.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.log_file.flush()

    def bar(self, epoch: int, initial: int, total: int):
        if not (self.active and self.show_progress):
            return _NoBar()
        return tqdm(total=total, initial=initial, desc=f"epoch {epoch}", unit="step",
                    dynamic_ncols=True, leave=False)

    def step(self, trainer: Any, losses: dict[str, float], samples: int, seconds: float,
             bar: Any) -> None:
        if not self.active:
            return
        for key, value in losses.items():
            self.sums[key] += value
        self.count += 1
        bar.update(1)
        bar.set_postfix_str(" ".join(f"{k}={v:.3g}" for k, v in losses.items()))
        step, opts = trainer.progress.step, trainer.options
        if self.writer is not None and (step % max(1, opts.log_every) == 0 or step == 1):
            for key, value in losses.items():
                self.writer.add_scalar(f"loss/{key}", value, step)
            self.writer.add_scalar("loss/total", sum(losses.values()), step)
            for name, optimizer in trainer.optimizers.items():
                self.writer.add_scalar(f"lr/{name}", optimizer.param_groups[0]["lr"], step)
            self.writer.add_scalar("speed/samples_per_s", samples / max(seconds, 1e-9), step)
        if opts.image_every and (step % opts.image_every == 0 or step == 1):
            grid = image_grid(*trainer.last)
            write_image(self.run_dir / "train-vis" / f"{step:08d}.png", grid)
            if self.writer is not None:
                self.writer.add_image("train/source|driving|transformed|deformed|prediction|"
                                      "occlusion", grid, step, dataformats="HWC")

    def end_epoch(self, epoch: int) -> None:
        if not self.active or self.count == 0:
            return
        means = {k: v / self.count for k, v in self.sums.items()}
        line = "; ".join(f"{k} - {v:.5f}" for k, v in means.items())
        if self.log_file is not None:
            self.log_file.write(f"{str(epoch).zfill(8)}) {line}\n")
            self.log_file.flush()
        if self.writer is not None:
            for key, value in means.items():
                self.writer.add_scalar(f"epoch/{key}", value, epoch)
        tqdm.write(f"epoch {epoch}: {line}")
        self.sums.clear()
        self.count = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


@torch.no_grad()
def image_grid(source: torch.Tensor, driving: torch.Tensor, generated: dict,
               rows: int = 4) -> np.ndarray:
    """Rows of: source + keypoints | driving + keypoints | warped frame + its keypoints |
    deformed source | prediction | occlusion map.  Returns uint8 (rows*H, columns*W, 3)."""
    n = min(rows, source.shape[0])
    h, w = source.shape[2:]
    out = generated["out"]

    def frames(t: torch.Tensor) -> np.ndarray:
        t = t[:n].detach().float()
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        if t.shape[2:] != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        return to_frames(t)

    def with_kp(t: torch.Tensor, kp: Any) -> np.ndarray:
        values = kp.value[:n].detach().float().cpu().numpy()
        return np.stack([draw_keypoints(f, k) for f, k in zip(frames(t), values, strict=True)])

    columns = [with_kp(source, generated["kp_source"]), with_kp(driving, generated["kp_driving"])]
    if "transformed" in generated:
        columns.append(with_kp(generated["transformed"], generated["kp_transformed"]))
    if out.deformed is not None:
        columns.append(frames(out.deformed))
    columns.append(frames(out.prediction))
    if out.occlusion_map is not None:
        columns.append(frames(out.occlusion_map))
    grid = np.concatenate(columns, axis=2)  # (n, H, C*W, 3)
    return np.ascontiguousarray(grid.reshape(n * h, grid.shape[2], 3))
