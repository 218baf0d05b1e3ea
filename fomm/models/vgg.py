"""VGG19 features for the perceptual loss, written out by hand, weights read from a user's file.

The layer list mirrors torchvision's ``vgg19().features`` up to ``relu5_1`` (index 29), so a
torchvision state dict (``features.N.weight`` / ``features.N.bias``, e.g. ``vgg19-dcbb9e9d.pth``
from the torch hub cache) loads directly; its deeper layers and classifier are ignored.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from fomm.errors import CheckpointError

# torchvision's configuration "E" up to relu5_1: channels of each conv, "M" a 2x2 max pool.
_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Indices in ``features`` after which relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 are taken
# (the slices [0, 2), [2, 7), [7, 12), [12, 21), [21, 30) of first-order-model's Vgg19).
TAPS = (1, 6, 11, 20, 29)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Vgg19(nn.Module):
    """Frozen VGG19 trunk returning the five ``relu<i>_1`` activations of a [0, 1] image.

    Inputs are normalised with the ImageNet mean and std, as first-order-model's ``Vgg19``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for spec in _LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, int(spec), kernel_size=3, padding=1),
                           nn.ReLU(inplace=True)]
                channels = int(spec)
        self.features = nn.Sequential(*layers)  # indices 0..29, as torchvision's
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Vgg19:
        return super().train(False)  # a fixed feature extractor: never in training mode

    def forward(self, x: Tensor) -> list[Tensor]:
        """Args: x (B, 3, H, W) in [0, 1]. Returns: (B, 64, H, W) … (B, 512, H/16, W/16)."""
        out = (x - self.mean) / self.std
        taps = []
        for index, layer in enumerate(self.features):
            out = layer(out)
            if index in TAPS:
                taps.append(out)
        return taps


def load_vgg19(path: str | Path) -> Vgg19:
    """Build :class:`Vgg19` and load a torchvision-format ``vgg19`` state dict from ``path``.

    Args:
        path: a ``torch.save``'d state dict (e.g. ``~/.cache/torch/hub/checkpoints/
            vgg19-dcbb9e9d.pth``), read with ``weights_only=True``.
    Returns:
        The network in eval mode with frozen weights, on the CPU.
    Raises:
        CheckpointError: missing or unreadable file, or keys/shapes that are not VGG19's.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: VGG19 weights not found (--vgg-weights expects "
                              "torchvision's vgg19-dcbb9e9d.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a readable VGG19 state dict ({first[:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a VGG19 state dict (a {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = Vgg19()
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise CheckpointError(f"{path}: {key} is missing; not a torchvision vgg19 state dict")
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{path}: {key} is {tuple(state[key].shape)}, VGG19 expects "
                                  f"{tuple(value.shape)} (is this vgg19, not vgg16?)")
    model.load_state_dict({k: state[k].float() for k in own}, strict=True)
    return model
