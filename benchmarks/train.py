"""Training throughput: samples/s and peak memory of ``Trainer.step`` at a full config.

Each (config, device, precision) runs in its own subprocess so that peak memory is its own
(``ru_maxrss`` on the CPU, ``torch.cuda.max_memory_allocated`` on a GPU).  Batches are random
tensors, so data loading is not measured; the perceptual loss uses a VGG19 with random weights
(same cost as the pretrained one).  Prints a table and JSON; ``--save`` writes
``benchmarks/results/train-<device>.json`` naming the machine.

    python benchmarks/train.py                      # vox-256 on the CPU, batch 2
    python benchmarks/train.py --configs vox-256 paddle-vox-mobile-256 --perceptual vgg fallback
    python benchmarks/train.py --device cuda --batch-size 16 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]


def measure(config: str, device: str, precision: str, batch: int, steps: int,
            warmup: int, perceptual: str = "vgg") -> dict:
    """One measurement in this process."""
    import torch

    from fomm.config import load_config
    from fomm.models import count_parameters
    from fomm.models.vgg import Vgg19
    from fomm.train.data import Pair
    from fomm.train.loop import Trainer, TrainOptions

    cfg = load_config(config)
    size = cfg.dataset.frame_shape[0]
    trainer = Trainer(TrainOptions(config=config, device=device, precision=precision,
                                   batch_size=batch, tensorboard=False, progress=False,
                                   out=str(Path("/tmp") / "fomm-bench-train")))
    if sum(cfg.train.loss_weights.perceptual) and perceptual == "vgg":
        trainer.perceptual.vgg = Vgg19().to(trainer.device)  # random weights, same cost
    g = torch.Generator().manual_seed(0)
    batches = [Pair(torch.rand(batch, 3, size, size, generator=g),
                    torch.rand(batch, 3, size, size, generator=g), ["x"] * batch)
               for _ in range(2)]
    cuda = trainer.device.type == "cuda"
    for i in range(warmup):
        trainer.step(batches[i % 2])
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps):
        start = time.perf_counter()
        trainer.step(batches[i % 2])
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step_s = sorted(times)[len(times) // 2]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    params = sum(count_parameters(m) for m in trainer.networks.values())
    return {
        "config": config, "device": str(trainer.device), "precision": precision,
        "batch_size": batch, "frame_size": size, "steps": steps, "warmup": warmup,
        "gan": cfg.train.loss_weights.generator_gan != 0, "parameters": params,
        "perceptual": perceptual,
        "seconds_per_step": round(step_s, 4), "samples_per_s": round(batch / step_s, 3),
        "peak_memory_mib": round(peak, 1),
        "memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["vox-256"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="default: fp32 on the CPU, fp32 and bf16 on a GPU")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default 2 on the CPU, 16 on a GPU")
    parser.add_argument("--perceptual", nargs="+", choices=["vgg", "fallback"], default=["vgg"],
                        help="VGG19 (the recipe) and/or the pixel L1 pyramid used without "
                             "--vgg-weights")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--save", action="store_true",
                        help="write benchmarks/results/train-<device>.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # config,device,prec,batch,perceptual
    args = parser.parse_args()
    if args.one:
        config, device, precision, batch, perceptual = args.one.split(",")
        print(json.dumps(measure(config, device, precision, int(batch), args.steps,
                                 args.warmup, perceptual)))
        return
    gpu = args.device.startswith("cuda")
    precisions = args.precisions or (["fp32", "bf16"] if gpu else ["fp32"])
    batch = args.batch_size or (16 if gpu else 2)
    rows = []
    load_before = os.getloadavg()  # other processes competing for the cores skew the timings
    runs = [(c, p, q) for c in args.configs for q in args.perceptual for p in precisions]
    for config, precision, perceptual in runs:
        one = f"{config},{args.device},{precision},{batch},{perceptual}"
        cmd = [sys.executable, __file__, "--one", one, "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    import torch

    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
               "python": platform.python_version(),
               "load_average_before": load_before, "load_average_after": os.getloadavg()}
    if gpu and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    print(f"{'config':<24}{'loss':<10}{'device':<8}{'prec':<6}{'batch':>6}{'s/step':>9}"
          f"{'samples/s':>11}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['config']:<24}{r['perceptual']:<10}{r['device']:<8}{r['precision']:<6}"
              f"{r['batch_size']:>6}"
              f"{r['seconds_per_step']:>9.3f}{r['samples_per_s']:>11.3f}"
              f"{r['peak_memory_mib']:>10.0f}")
    result = {"benchmark": "train", "machine": machine, "results": rows,
              "note": "Trainer.step on random batches (no data loading); perceptual 'vgg': VGG19 "
                      "with random weights (the recipe's cost), 'fallback': the pixel L1 pyramid "
                      "used without --vgg-weights; median step time after warm-up; the load "
                      "averages show how busy the machine was"}
    print(json.dumps(result, indent=2))
    if args.save:
        kind = "gpu" if gpu else "cpu"
        out = ROOT / "benchmarks" / "results" / f"train-{kind}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
