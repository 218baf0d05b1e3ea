"""Export-ready copies of the per-frame networks, shared by the graph backends (ONNX Runtime,
OpenVINO): the keypoint detector and the generator with a cached source encoding as modules of
tensors in and out, their paired output heads merged and their downsampling strided (the same
numbers to float rounding), and the cache folder and key of the graphs made from them.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fomm.models.blocks import AntiAliasInterpolation2d
from fomm.models.generator import SourceEncoding
from fomm.models.motion import Keypoints

GRAPH_VERSION = 3  # bump when the exported graphs change (part of the cache key)
GENERATOR_INPUTS = ("source", "features", "small", "kp_source_value", "kp_source_jacobian",
                    "kp_driving_value", "kp_driving_jacobian")
# generator outputs the frame path uses: the prediction, and for --detail the motion and mask
GENERATOR_OUTPUTS = ("prediction", "occlusion_map", "deformation", "blend_mask")


class KeypointGraph(nn.Module):
    """The keypoint detector with tensors out: value (, jacobian)."""

    def __init__(self, kp_detector: nn.Module) -> None:
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        kp = self.kp_detector(image)
        return (kp.value,) if kp.jacobian is None else (kp.value, kp.jacobian)


class GeneratorGraph(nn.Module):
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


def _plain_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in fp32 on the CPU with its classes' own ``forward`` methods: a
    per-instance ``forward`` (the reduced-precision islands of :mod:`fomm.runtime.precision`) would
    still call the original module."""
    module = copy.deepcopy(module).float().to("cpu", memory_format=torch.contiguous_format)
    for sub in module.modules():
        sub.__dict__.pop("forward", None)
    return module


def export_kp_detector(kp_detector: nn.Module) -> nn.Module:
    """A copy of ``kp_detector`` for export with its input downsampling strided (same numbers
    to float rounding; the original is left unchanged)."""
    kp_detector = _plain_copy(kp_detector)
    _stride_blurs(kp_detector)
    return kp_detector.eval()


def export_generator(generator: nn.Module) -> nn.Module:
    """A copy of ``generator`` for export with its paired output heads merged and its
    downsampling strided (same numbers to float rounding; the original is left unchanged)."""
    generator = _plain_copy(generator)
    _stride_blurs(generator)
    _share_heads(generator, "final", "blend")
    dense = getattr(generator, "dense_motion_network", None)
    if dense is not None:
        _share_heads(dense, "mask", "occlusion")
    return generator.eval()


class Example(NamedTuple):
    """What a graph backend traces the networks with, and the names of their tensors."""

    image: Tensor  # (2, 3, S, S) driving frames: the keypoint graph's input
    generator_inputs: tuple[Tensor, ...]  # one source, 2 frames' keypoints (GENERATOR_INPUTS)
    input_names: list[str]  # the generator graph's inputs (no jacobians without them)
    output_names: list[str]  # the generator graph's outputs (GENERATOR_OUTPUTS it has)
    kp_names: list[str]  # the keypoint graph's outputs: value (, jacobian)


def example(kp_detector: nn.Module, generator: nn.Module, size: int) -> Example:
    """Inputs to trace both graphs with: 2 frames, so that no batch size is fixed at 1."""
    image = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # not inference tensors: tracers reuse them
        kp = kp_detector(image)
        encoding = generator.encode_source(image[:1])
        kp_tensors = [kp.value] if kp.jacobian is None else [kp.value, kp.jacobian]
        flipped = [t.flip(0) for t in kp_tensors]
        probe = generator(image[:1], Keypoints(*kp_tensors), Keypoints(*flipped),
                          encoded=encoding, with_deformed=False)
    outputs = [n for n in GENERATOR_OUTPUTS if getattr(probe, n) is not None]
    names = [n for n in GENERATOR_INPUTS if kp.jacobian is not None or "jacobian" not in n]
    return Example(image, (image[:1], *encoding, *flipped, *kp_tensors), names, outputs,
                   ["value", "jacobian"][: len(kp_tensors)])


class LazyGraphs:
    """Both graphs of a model, converted on the first request for either (a cache hit needs
    neither).

    Args:
        kp_detector, generator: the modules (left unchanged: export-ready copies are converted).
        size: the model's image size S.
        convert: ``convert(module, inputs, input_names, output_names)`` → the backend's graph.
        prepare: optionally changes the copies first: ``prepare(kp, gen)`` → ``(kp, gen)``.
    """

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, size: int,
                 convert: Callable[..., Any],
                 prepare: Callable[[nn.Module, nn.Module], tuple[nn.Module, nn.Module]]
                 | None = None) -> None:
        self._args = kp_detector, generator, size
        self._convert, self._prepare = convert, prepare
        self._made: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        """The ``kp`` or ``generator`` graph."""
        if not self._made:
            kp_detector, generator, size = self._args
            ex = example(kp_detector, generator, size)
            kp, gen = export_kp_detector(kp_detector), export_generator(generator)
            if self._prepare is not None:
                kp, gen = self._prepare(kp, gen)
            # wrappers in eval(): an exporter restores a wrapper's mode, and its children's
            self._made["kp"] = self._convert(KeypointGraph(kp).eval(), (ex.image,), ["image"],
                                             ex.kp_names)
            self._made["generator"] = self._convert(
                GeneratorGraph(gen, tuple(ex.output_names)).eval(), ex.generator_inputs,
                ex.input_names, ex.output_names)
        return self._made[name]


def generator_feeds(source: dict[str, Any], kp_driving: Keypoints,
                    kp_source: Keypoints) -> dict[str, Tensor]:
    """The generator graph's inputs by name: ``source`` (the source-only ones, converted once)
    and B frames' keypoints, the source's (1, K, ·) ones repeated B times."""
    feeds = dict(source)
    b = kp_driving.value.shape[0]
    kp_source = kp_source.expand(b) if kp_source.value.shape[0] == 1 else kp_source
    feeds["kp_source_value"] = kp_source.value
    feeds["kp_driving_value"] = kp_driving.value
    if kp_driving.jacobian is not None:
        feeds["kp_source_jacobian"] = kp_source.jacobian
        feeds["kp_driving_jacobian"] = kp_driving.jacobian
    return feeds


def _keypoint_pair(kp: tuple[Tensor, ...]) -> tuple[Keypoints, Keypoints]:
    if len(kp) == 4:  # source value, jacobian, driving value, jacobian
        return Keypoints(kp[0], kp[1]), Keypoints(kp[2], kp[3])
    return Keypoints(kp[0]), Keypoints(kp[1])


def cache_folder(kind: str = "onnx") -> Path:
    """Where exported graphs of a ``kind`` (``onnx``, ``openvino``) are kept:
    ``$FOMM_CACHE/<kind>`` or the per-user cache."""
    if os.environ.get("FOMM_CACHE"):
        return Path(os.environ["FOMM_CACHE"]) / kind
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fomm")) / kind


def model_key(*modules: nn.Module, extra: str = "") -> str:
    """A digest of the modules' weights, buffers, classes and source code, torch's version and
    ``extra`` (the exporter's settings): the same key means the same exported graph."""
    digest = hashlib.sha256(f"{torch.__version__} graphs{GRAPH_VERSION} {extra}".encode())
    files = set()
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
        for sub in module.modules():
            digest.update(f"{type(sub).__qualname__}{sub.extra_repr()}".encode())
            files.add(inspect.getsourcefile(type(sub)) or "")
    # and the code that makes the graphs (this module, the backends, the precision islands)
    package = Path(__file__).parents[1]
    files.update(str(package / name) for name in (
        "models/motion.py", "runtime/graphs.py", "runtime/backends.py", "runtime/openvino.py",
        "runtime/precision.py"))
    for file in sorted(files):
        if file and Path(file).is_file():
            digest.update(Path(file).read_bytes())
    return digest.hexdigest()[:32]


def cached(path: Path, make: Callable[[], Any], load: Callable[[Path], Any] = Path.read_bytes,
           save: Callable[[Any, Path], Any] = lambda data, to: to.write_bytes(data),
           companions: tuple[str, ...] = ()) -> Any:
    """``load(path)``, else ``make()`` saved there (best effort: a read-only cache makes it again
    next time).

    ``save(graph, part)`` writes under another name, renamed into place after, so that another
    process never reads half a file; files it writes beside ``part`` with the ``companions``
    suffixes (OpenVINO's ``.bin`` weights) are renamed first.
    """
    try:
        return load(path)
    except Exception:  # missing or unreadable: make it again
        pass
    graph = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(f".{os.getpid()}.part{path.suffix}")
        save(graph, part)
        for suffix in companions:
            os.replace(part.with_suffix(suffix), path.with_suffix(suffix))
        os.replace(part, path)
    except Exception:  # a read-only cache
        pass
    return graph


def to_array(tensor: Tensor | Any) -> Any:
    """A contiguous float32 NCHW numpy array, the graph runtimes' input (arrays pass through)."""
    if not isinstance(tensor, Tensor):
        return tensor
    return tensor.detach().to(torch.float32).contiguous().numpy()


class GraphNetworks:
    """What a graph backend offers :class:`fomm.inference.animator.Animator`: keypoints of driving
    frames,
    the source's inputs converted once, and the generator for B frames."""

    def keypoints(self, images: Tensor) -> Keypoints:
        """Keypoints of (B, 3, S, S) float32 images, as the torch detector returns them."""
        raise NotImplementedError

    def source_arrays(self, image: Tensor, encoding: SourceEncoding) -> dict[str, Any]:
        """The source-only inputs of the generator graph, converted once per source."""
        return {"source": to_array(image), "features": to_array(encoding.features),
                "small": to_array(encoding.small)}

    def generate(self, source: dict[str, Any], kp_driving: Keypoints,
                 kp_source: Keypoints) -> Any:
        """The generator for B driving frames; ``kp_source`` is (1, K, ·) or (B, K, ·)."""
        raise NotImplementedError
