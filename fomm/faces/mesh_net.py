"""A small convolutional graph executed in PyTorch from fomm's graph format.

The format (written by :mod:`fomm.faces.mesh_tflite`) is a safetensors file whose tensors are
the weights in PyTorch layout and whose metadata key ``graph`` holds the op list as JSON: convs
(plain and depthwise, explicit asymmetric padding), PReLU, add, max-pool, channel padding and
reshape (with NHWC semantics), in NCHW. :class:`GraphNet` runs it in eager mode; being a plain
static module it also traces to ONNX. :func:`openvino_model` builds the same graph for OpenVINO.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn


def load_graph(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(spec, weights) from a graph file."""
    with safe_open(str(path), framework="pt") as f:
        spec = json.loads(f.metadata()["graph"])
        weights = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    return spec, weights


def _act(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "relu6":
        return F.relu6(x)
    return x


class GraphNet(nn.Module):
    """Runs a graph spec on NCHW float32 input; returns the outputs in the spec's order."""

    def __init__(self, spec: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.spec = spec
        self.ops: list[dict[str, Any]] = spec["ops"]
        self.input_id: int = spec["inputs"][0]["id"]
        self.output_ids: list[int] = [o["id"] for o in spec["outputs"]]
        for name, value in weights.items():
            self.register_buffer(name, value.float().contiguous(), persistent=False)
        # when each intermediate can be dropped (keeps peak memory low)
        last_use: dict[int, int] = {}
        for k, op in enumerate(self.ops):
            for i in op["x"] if isinstance(op["x"], list) else [op["x"]]:
                last_use[i] = k
        self._free = [
            [i for i, k2 in last_use.items() if k2 == k and i not in self.output_ids]
            for k in range(len(self.ops))
        ]

    @classmethod
    def load(cls, path: str | Path) -> GraphNet:
        return cls(*load_graph(path))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = {self.input_id: x}
        for k, op in enumerate(self.ops):
            kind = op["op"]
            if kind == "conv":
                inp = values[op["x"]]
                left, right, top, bottom = op["pad"]
                if left == right and top == bottom:
                    padding: tuple[int, int] | int = (top, left)
                else:
                    inp = F.pad(inp, (left, right, top, bottom))
                    padding = 0
                bias = getattr(self, op["b"]) if "b" in op else None
                y = F.conv2d(
                    inp,
                    getattr(self, op["w"]),
                    bias,
                    stride=op["stride"],
                    padding=padding,
                    groups=op["groups"],
                )
                y = _act(y, op["act"])
            elif kind == "prelu":
                y = F.prelu(values[op["x"]], getattr(self, op["a"]))
            elif kind == "add":
                a, b = op["x"]
                y = _act(values[a] + values[b], op["act"])
            elif kind == "maxpool":
                inp = values[op["x"]]
                left, right, top, bottom = op["pad"]
                if left or right or top or bottom:
                    inp = F.pad(inp, (left, right, top, bottom), value=float("-inf"))
                y = F.max_pool2d(inp, op["k"], op["stride"])
            elif kind == "pad":
                y = F.pad(values[op["x"]], op["pad"])
            elif kind == "reshape":
                y = values[op["x"]].permute(0, 2, 3, 1).reshape(op["shape"])
            else:
                raise ValueError(f"unknown op {kind!r}")
            values[op["y"]] = y
            for i in self._free[k]:
                values.pop(i, None)
        return tuple(values[i] for i in self.output_ids)


def openvino_model(spec: dict[str, Any], weights: dict[str, torch.Tensor]) -> Any:
    """The same graph built directly as an OpenVINO model (no tracing: milliseconds).

    Raises:
        ImportError: OpenVINO is not installed.
    """
    import openvino as ov
    import openvino.opset13 as ops

    def const(name: str) -> Any:
        return ops.constant(weights[name].float().numpy().astype(np.float32))

    def act(node: Any, name: str) -> Any:
        if name == "relu":
            return ops.relu(node)
        if name == "relu6":
            return ops.clamp(node, 0.0, 6.0)
        return node

    shape = spec["inputs"][0]["shape"]  # NHWC
    param = ops.parameter(
        ov.PartialShape([-1, shape[3], shape[1], shape[2]]), np.float32, name="image"
    )  # any batch
    values: dict[int, Any] = {spec["inputs"][0]["id"]: param.output(0)}
    for op in spec["ops"]:
        kind = op["op"]
        if kind == "conv":
            left, right, top, bottom = op["pad"]
            begin, end = [top, left], [bottom, right]
            weight = weights[op["w"]].float().numpy()
            if op["groups"] == 1:
                y = ops.convolution(
                    values[op["x"]], ops.constant(weight), op["stride"], begin, end, [1, 1]
                )
            else:
                grouped = weight.reshape(op["groups"], -1, *weight.shape[1:])
                y = ops.group_convolution(
                    values[op["x"]], ops.constant(grouped), op["stride"], begin, end, [1, 1]
                )
            if "b" in op:
                bias = weights[op["b"]].float().numpy().reshape(1, -1, 1, 1)
                y = ops.add(y, ops.constant(bias))
            y = act(y, op["act"])
        elif kind == "prelu":
            y = ops.prelu(values[op["x"]], const(op["a"]))
        elif kind == "add":
            a, b = op["x"]
            y = act(ops.add(values[a], values[b]), op["act"])
        elif kind == "maxpool":
            left, right, top, bottom = op["pad"]
            y = ops.max_pool(
                values[op["x"]], op["stride"], [1, 1], [top, left], [bottom, right], op["k"]
            ).output(0)
        elif kind == "pad":
            w0, w1, h0, h1, c0, c1 = op["pad"]
            y = ops.pad(values[op["x"]], [0, c0, h0, w0], [0, c1, h1, w1], "constant", 0.0)
        elif kind == "reshape":
            nhwc = ops.transpose(values[op["x"]], ops.constant(np.array([0, 2, 3, 1])))
            y = ops.reshape(nhwc, ops.constant(np.array(op["shape"])), False)
        else:
            raise ValueError(f"unknown op {kind!r}")
        values[op["y"]] = y.output(0) if hasattr(y, "output") else y
    results = [ops.result(values[o["id"]]) for o in spec["outputs"]]
    return ov.Model(results, [param], "graph")


Runner = Callable[[np.ndarray], tuple[np.ndarray, ...]]  # NCHW float32 batch -> outputs


class TorchRunner:
    """:class:`GraphNet` in inference mode, channels-last (faster depthwise convolutions), on a
    worker thread of its own with one intra-op thread: two threads for such small convolutions
    cost more than they gain, and a loaded machine makes them spin (10 to 50 times slower
    measured); OpenMP's thread count is per calling thread, so the caller's stays as it is.

    Thread-safe: calls queue for the worker; the module holds no state between calls."""

    def __init__(self, path: str | Path) -> None:
        self.net = GraphNet.load(path).eval().to(memory_format=torch.channels_last)
        self._worker = ThreadPoolExecutor(
            1, "fomm-mesh", initializer=torch.set_num_threads, initargs=(1,)
        )

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        tensor = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return tuple(out.numpy() for out in self.net(tensor))

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return self._worker.submit(self._forward, x).result()


class OpenVinoRunner:
    """The graph compiled by OpenVINO for the CPU on one thread (fast for such small networks,
    and it leaves the other cores to the animation); an inference request per calling thread.

    Raises:
        ImportError: OpenVINO is not installed (or another error where it cannot compile).
    """

    def __init__(self, path: str | Path) -> None:
        import openvino as ov

        config = {
            "INFERENCE_NUM_THREADS": "1",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        model = openvino_model(*load_graph(path))
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        out = request.infer([x])
        return tuple(np.array(out[i]) for i in range(len(out)))


_lock = threading.Lock()


@lru_cache(maxsize=8)
def _cached_runner(path: str, backend: str) -> Runner:
    if backend != "torch":
        try:
            return OpenVinoRunner(path)
        except Exception:  # no OpenVINO, or no CPU plugin for it: PyTorch runs the graph
            if backend == "openvino":
                raise
    return TorchRunner(path)


def runner(path: str | Path) -> Runner:
    """The runner of a graph file, made once per process: OpenVINO where it is installed, else
    PyTorch (``FOMM_MESH_BACKEND=torch`` or ``openvino`` forces one)."""
    backend = os.environ.get("FOMM_MESH_BACKEND", "auto")
    with _lock:
        return _cached_runner(str(path), backend)
