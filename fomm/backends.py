"""Where the per-frame networks run: torch eager, or ONNX Runtime on the CPU (``--backend``).

The per-frame work of animation is the keypoint detector on a driving frame and the generator
with the source's cached encoding (:class:`fomm.models.generator.SourceEncoding`). On a CPU at
fp32, ONNX Runtime runs both about 3× faster than torch eager (it fuses batch norm and ReLU into
the convolutions and plans memory once; ``benchmarks/animate.py``), within 1e-4 of eager. The
networks are exported in memory when an :class:`fomm.animate.Animator` is built (no files), from
the same modules, so any checkpoint fomm loads runs on it; a model that does not export falls
back to torch eager with a note. ``auto`` (the default) picks ONNX Runtime on a CPU at fp32 when
``onnxruntime`` is installed (``pip install 'fomm[fast]'``), torch eager elsewhere; the
environment variable ``FOMM_BACKEND`` (``torch``, ``onnx``, ``auto``) overrides the default.
Parity with the original code is defined on the torch eager path (``--backend torch``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.errors import FommError
from fomm.models.blocks import AntiAliasInterpolation2d
from fomm.models.generator import GeneratorOutput, SourceEncoding
from fomm.motion import Keypoints

BACKENDS = ("auto", "torch", "onnx")
ENV = "FOMM_BACKEND"
OPSET = 17
GRAPH_VERSION = 3  # bump when the exported graphs change (part of the cache key)
_GEN_INPUTS = ("source", "features", "small", "kp_source_value", "kp_source_jacobian",
               "kp_driving_value", "kp_driving_jacobian")
# generator outputs the frame path uses: the prediction, and for --detail the motion and mask
_GEN_OUTPUTS = ("prediction", "occlusion_map", "deformation", "blend_mask")


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op work on ``n`` threads inside the block, restoring the count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` imports."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(name: str | None, device: torch.device, precision: str) -> str:
    """``auto`` → ``onnx`` on a CPU at fp32 with onnxruntime installed, else ``torch``.

    ``name`` None reads ``$FOMM_BACKEND`` (default ``auto``).

    Raises:
        FommError: an unknown name, or ``onnx`` where it cannot run (GPU, reduced precision,
            onnxruntime missing).
    """
    name = name or os.environ.get(ENV, "auto") or "auto"
    if name not in BACKENDS:
        raise FommError(f"unknown backend '{name}' ({', '.join(BACKENDS)})")
    fits = device.type == "cpu" and precision == "fp32"
    if name == "auto":
        return "onnx" if fits and onnxruntime_available() else "torch"
    if name == "onnx":
        if not fits:
            raise FommError(f"--backend onnx runs on the CPU at fp32 (got {device.type}, "
                            f"{precision}); use --backend torch")
        if not onnxruntime_available():
            raise FommError("--backend onnx needs onnxruntime: pip install 'fomm[fast]' "
                            "(or use --backend torch)")
    return name


class _KeypointGraph(nn.Module):
    def __init__(self, kp_detector: nn.Module) -> None:
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        kp = self.kp_detector(image)
        return (kp.value,) if kp.jacobian is None else (kp.value, kp.jacobian)


class _GeneratorGraph(nn.Module):
    """The generator for B driving frames with a cached source encoding (batch 1, broadcast)."""

    def __init__(self, generator: nn.Module, outputs: tuple[str, ...]) -> None:
        super().__init__()
        self.generator, self.outputs = generator, outputs

    def forward(self, source: Tensor, features: Tensor, small: Tensor, *kp: Tensor
                ) -> tuple[Tensor, ...]:
        kp_source, kp_driving = _keypoint_pair(kp)
        out = self.generator(source, kp_driving, kp_source,
                             encoded=SourceEncoding(features, small), with_deformed=False)
        return tuple(getattr(out, name) for name in self.outputs)


class _SharedHead(nn.Module):
    """Two convolutions over the same input computed as one, for export only.

    ONNX Runtime pads a convolution's output channels to its SIMD block (8 floats on AVX2), so
    the generator's 7×7 heads with 3 and 1 outputs (``final``, ``blend``) cost as much as two
    8-channel convolutions: 38 % of the bundled generator's time. One 4-channel convolution does
    the same sums once. The first head returns its channels and keeps the rest for the second,
    which must be called next on the same input (as the generator and dense motion do).
    """

    def __init__(self, first: nn.Conv2d, second: nn.Conv2d) -> None:
        super().__init__()
        self.conv = nn.Conv2d(first.in_channels, first.out_channels + second.out_channels,
                              first.kernel_size, padding=first.padding)
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([first.weight, second.weight]))
            self.conv.bias.copy_(torch.cat([first.bias, second.bias]))
        self.split = first.out_channels
        self.rest: tuple[Tensor, Tensor] | None = None

    def first(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        self.rest = (x, out[:, self.split:])
        return out[:, : self.split]

    def second(self, x: Tensor) -> Tensor:
        assert self.rest is not None and self.rest[0] is x, "heads called out of order"
        out, self.rest = self.rest[1], None
        return out


class _Call(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def _share_heads(owner: nn.Module, first: str, second: str) -> None:
    """Replace ``owner.first`` and ``owner.second`` by one :class:`_SharedHead` when they fit."""
    a, b = getattr(owner, first, None), getattr(owner, second, None)
    fits = all(isinstance(c, nn.Conv2d) and c.bias is not None and c.groups == 1 and
               c.stride == (1, 1) and c.dilation == (1, 1) for c in (a, b))
    if not fits or (a.in_channels, a.kernel_size, a.padding) != (
            b.in_channels, b.kernel_size, b.padding):
        return
    head = _SharedHead(a, b)
    setattr(owner, first, _Call(head.first))
    setattr(owner, second, _Call(head.second))
    owner.shared_head = head  # keeps the merged weights in the module tree


class _StridedBlur(nn.Module):
    """:class:`fomm.models.blocks.AntiAliasInterpolation2d` computed only where it is kept.

    The original blurs at full resolution, then keeps every k-th pixel: for the keypoint
    detector's 1/4 scale, a 13×13 depthwise convolution over the whole 256² frame of which
    15/16 is thrown away, 39 % of the detector's time on ONNX Runtime. A convolution with
    stride k computes the kept sums alone (the same numbers).
    """

    def __init__(self, down: AntiAliasInterpolation2d) -> None:
        super().__init__()
        self.down = down

    def forward(self, x: Tensor) -> Tensor:
        d = self.down
        out = F.pad(x, (d.ka, d.kb, d.ka, d.kb))
        return F.conv2d(out, weight=d.weight, groups=d.groups, stride=d.int_inv_scale)


def _stride_blurs(root: nn.Module) -> None:
    """Replace the downsampling :class:`AntiAliasInterpolation2d` modules under ``root``."""
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, AntiAliasInterpolation2d) and child.scale != 1.0:
                setattr(module, name, _StridedBlur(child))


def export_kp_detector(kp_detector: nn.Module) -> nn.Module:
    """A copy of ``kp_detector`` for export with its input downsampling strided (same numbers
    to float rounding; the original is left unchanged)."""
    kp_detector = copy.deepcopy(kp_detector)
    _stride_blurs(kp_detector)
    return kp_detector.eval()


def export_generator(generator: nn.Module) -> nn.Module:
    """A copy of ``generator`` for export with its paired output heads merged and its
    downsampling strided (same numbers to float rounding; the original is left unchanged)."""
    generator = copy.deepcopy(generator)
    _stride_blurs(generator)
    _share_heads(generator, "final", "blend")
    dense = getattr(generator, "dense_motion_network", None)
    if dense is not None:
        _share_heads(dense, "mask", "occlusion")
    return generator.eval()


def _keypoint_pair(kp: tuple[Tensor, ...]) -> tuple[Keypoints, Keypoints]:
    if len(kp) == 4:  # source value, jacobian, driving value, jacobian
        return Keypoints(kp[0], kp[1]), Keypoints(kp[2], kp[3])
    return Keypoints(kp[0]), Keypoints(kp[1])


def _export(module: nn.Module, inputs: tuple[Tensor, ...], names: list[str],
            outputs: list[str]) -> bytes:
    """``module`` as an ONNX graph with a dynamic batch axis, in memory."""
    buffer = io.BytesIO()
    # the source's inputs are one image broadcast over the frames: a batch axis of their own
    axes = {n: {0: "sources" if n in ("source", "features", "small") else "batch"}
            for n in names + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=outputs, dynamic_axes=axes)
    return buffer.getvalue()


def cache_folder() -> Path:
    """Where exported graphs are kept: ``$FOMM_CACHE/onnx`` or the per-user cache."""
    if os.environ.get("FOMM_CACHE"):
        return Path(os.environ["FOMM_CACHE"]) / "onnx"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fomm")) / "onnx"


def model_key(*modules: nn.Module, extra: str = "") -> str:
    """A digest of the modules' weights, buffers, classes and source code, torch's version and
    ``extra``: the same key means the same exported graph."""
    digest = hashlib.sha256(
        f"{torch.__version__} opset{OPSET} graphs{GRAPH_VERSION} {extra}".encode())
    files = set()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
        for sub in module.modules():
            digest.update(f"{type(sub).__qualname__}{sub.extra_repr()}".encode())
            files.add(inspect.getsourcefile(type(sub)) or "")
    from fomm import motion

    files.add(inspect.getsourcefile(motion) or "")
    for file in sorted(files):
        if file and Path(file).is_file():
            digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:32]


def _cached(path: Path, make: Any) -> bytes:
    """The bytes at ``path``, else ``make()`` written there (atomically; best effort)."""
    try:
        return path.read_bytes()
    except OSError:
        pass
    data = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:  # a read-only cache: export again next time
        pass
    return data


class OnnxNetworks:
    """The keypoint detector and the per-frame generator as ONNX Runtime sessions.

    Args:
        kp_detector, generator: fp32 CPU modules in ``eval()`` mode (left unchanged).
        size: the model's image size S.
        threads: intra-op threads (default: torch's).
        cache: keep the exported graphs in :func:`cache_folder`, keyed by :func:`model_key`.

    Raises:
        Exception: whatever the export raises for a model it cannot trace (callers fall back).
    """

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, size: int,
                 threads: int | None = None, cache: bool = True) -> None:
        import onnxruntime as ort

        key = model_key(kp_detector, generator, extra=f"size{size}") if cache else ""
        folder = cache_folder()
        made: dict[str, bytes] = {}

        def export() -> None:  # both graphs, traced with 2 frames so no shape is fixed at 1
            image = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():  # not inference tensors: the tracer reuses them
                kp = kp_detector(image)
                encoding = generator.encode_source(image[:1])
                kp_tensors = [kp.value] if kp.jacobian is None else [kp.value, kp.jacobian]
                flipped = [t.flip(0) for t in kp_tensors]
                probe = generator(image[:1], Keypoints(*kp_tensors), Keypoints(*flipped),
                                  encoded=encoding, with_deformed=False)
            kp_names = ["value", "jacobian"][: len(kp_tensors)]
            # wrappers in eval(): export restores a wrapper's mode, and with it its children's
            made["kp"] = _export(_KeypointGraph(export_kp_detector(kp_detector)).eval(),
                                 (image,), ["image"], kp_names)
            outputs = [n for n in _GEN_OUTPUTS if getattr(probe, n) is not None]
            names = [n for n in _GEN_INPUTS if kp.jacobian is not None or "jacobian" not in n]
            made["generator"] = _export(_GeneratorGraph(export_generator(generator),
                                                        tuple(outputs)).eval(),
                                        (image[:1], *encoding, *flipped, *kp_tensors), names,
                                        outputs)

        def graph(name: str) -> bytes:
            if not made:
                export()
            return made[name]

        if cache:
            kp_bytes = _cached(folder / f"{key}-kp.onnx", lambda: graph("kp"))
            gen_bytes = _cached(folder / f"{key}-generator.onnx", lambda: graph("generator"))
        else:
            kp_bytes, gen_bytes = graph("kp"), graph("generator")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle threads sleep instead of spinning: on a 2-core machine shared with the capture,
        # the detector and torch, spinning measured 25 % more CPU per frame and slower frames
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        self._kp = ort.InferenceSession(kp_bytes, options, providers=providers)
        self._gen = ort.InferenceSession(gen_bytes, options, providers=providers)
        self.jacobian = len(self._kp.get_outputs()) == 2
        self.outputs = tuple(o.name for o in self._gen.get_outputs())
        self._inputs = {i.name for i in self._gen.get_inputs()}  # unused ones are pruned

    def keypoints(self, images: Tensor) -> Keypoints:
        """Keypoints of (B, 3, S, S) float32 images, as the torch detector returns them."""
        out = self._kp.run(None, {"image": _array(images)})
        return Keypoints(*(torch.from_numpy(a) for a in out))

    def source_arrays(self, image: Tensor, encoding: SourceEncoding) -> dict[str, Any]:
        """The source-only inputs of the generator graph, converted once per source."""
        return {"source": _array(image), "features": _array(encoding.features),
                "small": _array(encoding.small)}

    def generate(self, source: dict[str, Any], kp_driving: Keypoints,
                 kp_source: Keypoints) -> GeneratorOutput:
        """The generator for B driving frames; ``kp_source`` is (1, K, ·) or (B, K, ·)."""
        feeds = dict(source)  # one source image, broadcast over the B frames by the graph
        b = kp_driving.value.shape[0]
        kp_source = kp_source.expand(b) if kp_source.value.shape[0] == 1 else kp_source
        feeds["kp_source_value"] = _array(kp_source.value)
        feeds["kp_driving_value"] = _array(kp_driving.value)
        if self.jacobian:
            feeds["kp_source_jacobian"] = _array(kp_source.jacobian)
            feeds["kp_driving_jacobian"] = _array(kp_driving.jacobian)
        feeds = {name: value for name, value in feeds.items() if name in self._inputs}
        out = self._gen.run(list(self.outputs), feeds)
        return GeneratorOutput(**{n: torch.from_numpy(a) for n, a in zip(self.outputs, out)})


def _array(tensor: Tensor) -> Any:
    """A contiguous float32 NCHW numpy view (ONNX Runtime's layout)."""
    return tensor.detach().to(torch.float32).contiguous().numpy()


def build_onnx(kp_detector: nn.Module, generator: nn.Module, size: int,
               explicit: bool) -> OnnxNetworks | None:
    """:class:`OnnxNetworks`, or None (with a note) where the model does not export and the
    backend was ``auto``; an explicit ``onnx`` request raises instead."""
    try:
        return OnnxNetworks(kp_detector, generator, size)
    except Exception as exc:  # an exporter failure on an unusual model: eager still works
        if explicit:
            raise FommError(f"--backend onnx: this model did not export to ONNX ({exc}); "
                            "use --backend torch") from exc
        print(f"note: ONNX export failed ({type(exc).__name__}); running torch eager",
              file=sys.stderr)
        return None
