"""--detail: the photo's own pixels moved by the dense motion at the output resolution."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from media import astronaut, save, talking_clip
from PIL import Image
from tiny import tiny_models

from fomm.checkpoints.loading import load_model
from fomm.config import AnimateOptions
from fomm.faces.crop import crop, square_box
from fomm.faces.detect import detect_faces
from fomm.faces.paste import MultiPaster
from fomm.inference.animator import Animator
from fomm.inference.pipeline import animate_file
from fomm.media.image import resize
from fomm.media.video import iter_frames
from fomm.models import motion
from fomm.render import detail, spline


def laplacian_variance(image: np.ndarray, box) -> float:
    """Sharpness: variance of the Laplacian of the grey image inside ``box``."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    grey = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def frames_of(folder) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))])


def textured(size: int, seed: int = 0) -> np.ndarray:
    """A smooth colour gradient with fine texture (detail a model-size image cannot hold)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([150 + 60 * x, 120 + 40 * y, 90 + 50 * x * y], -1)
    noise = cv2.GaussianBlur(rng.normal(0, 30, (size, size)).astype(np.float32), (0, 0), 0.7)
    return np.clip(base + noise[..., None], 0, 255).astype(np.uint8)


def test_generator_outputs_unchanged_and_blend_mask_exposed():
    models, cfg = tiny_models()
    gen = models.generator.eval()
    torch.manual_seed(1)
    source = torch.rand(1, 3, 64, 64)
    kp = models.kp_detector(source)
    with torch.no_grad():
        out = gen(source, kp, kp)
        assert out.blend_mask is None  # no blend_output: nothing new, the same prediction
        features = gen.deform_input(gen.encode(source), out.deformation) * out.occlusion_map
        assert torch.equal(out.prediction, gen.decode(features))
        gen.blend = torch.nn.Conv2d(4, 1, 7, padding=3)  # as blend_output builds it
        out = gen(source, kp, kp)
        assert out.blend_mask.shape == (1, 1, 64, 64)
        assert torch.equal(out.prediction, gen.decode(features, out.deformed))


def test_combine_band_split():
    torch.manual_seed(0)
    sharp = torch.rand(2, 3, 128, 128)
    network = F.interpolate(sharp, size=(64, 64), mode="bilinear", antialias=True)
    ones, zeros = torch.ones(2, 1, 64, 64), torch.zeros(2, 1, 64, 64)
    # where the network reproduces the warped source, the result is the sharp warp
    assert (detail.combine(network, sharp, ones, 32) - sharp).abs().mean() < 0.02
    # where it generates, the network's output upsampled
    upsampled = F.interpolate(network, size=(128, 128), mode="bicubic").clamp(0, 1)
    assert torch.allclose(detail.combine(network, sharp, zeros, 32), upsampled)
    # colour comes from the network: a shifted network shifts the result's low band only
    shifted = detail.combine((network + 0.1).clamp(0, 1), sharp, ones, 32)
    low = F.avg_pool2d(shifted - sharp, 16)
    assert torch.allclose(low, torch.full_like(low, 0.1), atol=0.02)


def identity_grid(side: int, batch: int = 1, align_corners: bool = False) -> torch.Tensor:
    """(B, side, side, 2) grid that samples every pixel centre."""
    lin = (torch.linspace(-1, 1, side) if align_corners
           else (torch.arange(side) + 0.5) / side * 2 - 1)
    return torch.stack(torch.meshgrid(lin, lin, indexing="xy"), -1)[None].expand(batch, -1, -1, -1)


def smooth_field(side: int, pixels: float, seed: int = 0) -> torch.Tensor:
    """(1, side, side, 2) smooth displacement of about ``pixels`` pixels, in grid units."""
    gen = torch.Generator().manual_seed(seed)
    field = F.interpolate(torch.randn(1, 2, 4, 4, generator=gen) * pixels, size=(side, side),
                          mode="bicubic")
    return field.permute(0, 2, 3, 1) * 2 / side


def test_spline_doubling_keeps_pixels_and_is_scipys_spline():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((1, 2, 9, 60)))  # float64; 9 rows: pads wider than it
    fine = spline.upsample2x(image, order=5)
    assert fine.shape == (1, 2, 18, 120)
    assert torch.equal(fine[..., ::2, ::2], image)  # the source's own pixels, exactly
    rows, cols = np.mgrid[0:9, 0:60] + 0.5  # halfway, both axes: scipy's interpolating spline
    for c in range(2):
        expected = ndimage.map_coordinates(image[0, c].numpy(), [rows, cols], order=5,
                                           mode="mirror")
        assert np.abs(fine[0, c, 1::2, 1::2].numpy() - expected).max() < 1e-4
    taps = spline.half_pixel_taps()
    assert torch.allclose(taps, taps.flip(0)) and abs(float(taps.sum()) - 1) < 1e-12


@pytest.mark.parametrize("align_corners", [False, True])
def test_spline_warp_reproduces_the_photo_on_its_pixels(align_corners):
    torch.manual_seed(0)
    for side in (8, 37):  # 8: the smallest detail size, narrower than the spline's filter
        photo = torch.rand(1, 3, side, side)
        warped = detail.sharp_warp(photo, identity_grid(side, 2, align_corners), align_corners)
        assert warped.shape == (2, 3, side, side)
        assert (warped - photo).abs().max() < 1e-4


def test_spline_warp_keeps_grain_between_pixels():
    """Pixel-level grain moved by a fraction of a pixel: the spline keeps most of its Laplacian
    variance, bicubic and bilinear sampling much less (0.83, 0.55, 0.21 at a quarter pixel)."""
    side = 96
    grain = torch.from_numpy(np.random.default_rng(0).uniform(0.3, 0.7, (1, 1, side, side)))
    grain = grain.float().expand(1, 3, side, side).contiguous()

    def kept(warped: torch.Tensor) -> float:
        def variance(x: torch.Tensor) -> float:
            lap = cv2.Laplacian(x[0].mean(0).double().numpy(), cv2.CV_64F)
            return float(lap[4:-4, 4:-4].var())  # away from the repeated border

        return variance(warped) / variance(grain)

    grid = identity_grid(side)
    for moved in (grid + 0.5 / side, grid + smooth_field(side, 2.0)):  # 1/4 px; ~2 px smooth
        splined = kept(detail.sharp_warp(grain, moved, False, "spline"))
        bicubic = kept(detail.sharp_warp(grain, moved, False, "bicubic"))
        bilinear = kept(F.grid_sample(grain, moved, mode="bilinear", padding_mode="border",
                                      align_corners=False))
        assert splined >= 0.75 and splined > bicubic + 0.2 > bilinear + 0.2, (splined, bicubic)


def test_spline_warp_of_a_smooth_image_is_bicubics():
    side = 96
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    smooth = torch.stack([0.5 + 0.3 * torch.sin(3 * x + 2 * y), 0.5 + 0.3 * torch.cos(4 * y),
                          0.4 + 0.2 * x * y])[None]
    grid = identity_grid(side) + smooth_field(side, 3.0)
    splined = detail.sharp_warp(smooth, grid, False, "spline")
    bicubic = detail.sharp_warp(smooth, grid, False, "bicubic")
    assert (splined - bicubic).abs().max() < 2 / 255
    assert (splined - bicubic).abs().mean() < 1e-3


def test_doubled_source_is_computed_once_per_source():
    source = torch.rand(1, 3, 16, 16)
    fine = spline.doubled(source)
    assert spline.doubled(source) is fine and fine.shape == (1, 3, 32, 32)
    assert spline.doubled(source.clone()) is not fine  # another tensor, its own doubling
    key = id(source)
    del source
    assert key not in spline._DOUBLED  # released with its source


def test_pixel_box_and_size():
    assert detail.pixel_box((10.4, 20.6, 110.2, 120.4)) == (10, 21, 110, 121)
    assert detail.detail_size(700.3) == 700
    assert detail.detail_size(100) == 100
    assert detail.detail_size(5000) == detail.DETAIL_MAX


def test_render_sizes_every_kind_and_batching():
    """Original and PaddleGAN flavours, with and without a mask; chunks give the same frames."""
    for flavour in ("original", "paddle"):
        models, cfg = tiny_models(flavour=flavour)
        # eager: the frames are compared with the torch generator's output below
        animator = Animator(models, cfg, device="cpu", backend="torch")
        source = animator.prepare_source(textured(64), detail=textured(160))
        kp = animator.keypoints(animator.to_model_input([textured(64, s) for s in range(3)]))
        frames = animator.generate(source, kp)
        assert frames.shape == (3, 3, 160, 160) and frames.min() >= 0 and frames.max() <= 1
        with torch.inference_mode():
            out = animator.generator(source.image, kp, source.kp.expand(3),
                                     encoded=source.encoding, with_deformed=False)
            one = detail.render_batched(animator.generator, out, source.detail, pixels=160 * 160)
            assert torch.allclose(one, frames, atol=1e-6)
            no_mask = out._replace(occlusion_map=None)
            assert detail.render(animator.generator, no_mask, source.detail).shape[-1] == 160


def reference_render(generator, out, source: torch.Tensor, cutoff: float = detail.CUTOFF,
                     sampler: str = "spline") -> torch.Tensor:
    """:func:`detail.render` as first written: whole-batch torch resizes, square pools."""

    def resample(image, size, mode="bicubic"):
        if image.shape[-1] == size:
            return image
        if image.shape[-1] > size:
            return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
        return F.interpolate(image, size=(size, size), mode=mode)

    def window(mask, r, pool):
        return pool(F.pad(mask, (r, r, r, r), mode="replicate"), 2 * r + 1, stride=1)

    def soft_mask(mask, size):
        mask, side = mask.float().clamp(0, 1), mask.shape[-1]
        close = max(1, round(side * detail.MASK_CLOSE))
        mask = -window(-window(mask, close, F.max_pool2d), close, F.max_pool2d)
        radius = max(1, round(side * detail.MASK_BLUR))
        for _ in range(2):
            mask = window(mask, radius, F.avg_pool2d)
        return F.interpolate(mask, size=(size, size), mode="bilinear")

    network, size = out.prediction.float(), source.shape[-1]
    grid = out.deformation.float()
    if generator.paddle_inference:
        s = network.shape[-1]
        grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(s, s), mode="bilinear")
        weight = motion.border_blend_weights(s, s, 5, grid.dtype, grid.device)
        identity = motion.make_coordinate_grid(s, s, grid.dtype, grid.device)
        grid = weight * grid.permute(0, 2, 3, 1) + (1 - weight) * identity.unsqueeze(0)
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear")
    grid, align = grid.permute(0, 2, 3, 1), generator.align_corners
    if sampler == "spline":
        scale = (size - 1) / size if align else 1.0
        grid, align, source = grid * scale - 1 / (2 * size), False, spline.doubled(source)
    sharp = F.grid_sample(source.expand(grid.shape[0], -1, -1, -1), grid, mode="bicubic",
                          padding_mode="border", align_corners=align).clamp(0, 1)
    band = max(8, min(network.shape[-1], round(network.shape[-1] * cutoff)))
    net_up = resample(network, size)
    low = resample(resample(sharp, band) - resample(network, band), size, "bilinear")
    combined = net_up + soft_mask(detail.copy_mask(out), size) * (sharp - net_up - low)
    return combined.clamp(0, 1)


@pytest.mark.parametrize("flavour", ["original", "paddle"])
def test_render_equals_the_reference_computation(flavour):
    """The faster render (cv2 resizes and windows on the CPU, one frame at a time, the spline's
    coordinate map on the small motion) gives the first implementation's numbers."""
    models, cfg = tiny_models(flavour=flavour)
    animator = Animator(models, cfg, device="cpu", backend="torch")
    kp = animator.keypoints(animator.to_model_input([textured(64, s) for s in range(3)]))
    for side in (160, 48, 64):  # above, below and at the model size (64)
        source = animator.prepare_source(textured(64), detail=textured(side))
        with torch.inference_mode():
            out = animator.generator(source.image, kp, source.kp.expand(3),
                                     encoded=source.encoding, with_deformed=False)
            for sampler in ("spline", "bicubic"):
                for variant in (out, out._replace(occlusion_map=None)):
                    expected = reference_render(animator.generator, variant, source.detail,
                                                sampler=sampler)
                    got = detail.render(animator.generator, variant, source.detail,
                                        sampler=sampler)
                    assert (got - expected).abs().max() < 1e-5, (side, sampler)


def test_cpu_resize_and_windows_are_torchs():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 37, 37)
    for size in (37, 80, 100, 20):
        for mode in ("bilinear", "bicubic"):
            expected = F.interpolate(image, size=(size, size), mode=mode,
                                     antialias=size < 37 and mode == "bilinear")
            if size < 37 and mode == "bicubic":
                continue  # shrinking is always the anti-aliased bilinear
            got = detail._resample(image, size, mode)
            assert got.shape == (2, 3, size, size)
            assert torch.allclose(got, expected, atol=1e-5), (size, mode)
    mask = torch.rand(2, 1, 50, 50)
    padded = F.pad(mask, (3, 3, 3, 3), mode="replicate")
    assert torch.equal(detail._window(mask, 3, "amax"), F.max_pool2d(padded, 7, stride=1))
    assert torch.equal(detail._window(mask, 3, "amin"), -F.max_pool2d(-padded, 7, stride=1))
    assert torch.allclose(detail._window(mask, 3, "mean"), F.avg_pool2d(padded, 7, stride=1),
                          atol=1e-6)


def test_detail_off_is_todays_output(tmp_path, tiny_ckpt):
    """--detail off: the model-size results pasted as before, bit for bit (the expression
    layer and its stitching off: they change the frames on purpose)."""
    photo = np.ascontiguousarray(cv2.resize(astronaut(), (768, 768)))
    path = save(tmp_path / "photo.png", photo)
    opts = AnimateOptions(max_frames=3, progress=False, detail=False, crop_driving="off",
                          precision="fp32", device="cpu", expression=False)
    animate_file(path, talking_clip(), tmp_path / "off/", opts, checkpoint=tiny_ckpt)
    models, cfg = load_model(tiny_ckpt)
    animator = Animator(models, cfg, device="cpu")
    box = square_box(detect_faces(photo)[0], photo.shape)
    source = animator.prepare_source(crop(photo, box, animator.size))
    paster = MultiPaster(photo, [box], animator.size)
    expected = [paster.paste([f]) for f in animator.animate(
        source, iter_frames(talking_clip(), max_frames=3))]
    assert np.array_equal(frames_of(tmp_path / "off"), np.stack(expected))
    # on: the same frame size, another (sharper) face
    animate_file(path, talking_clip(), tmp_path / "on/", replace(opts, detail=True),
                 checkpoint=tiny_ckpt)
    on = frames_of(tmp_path / "on")
    assert on.shape == (3, *photo.shape) and not np.array_equal(on, np.stack(expected))


def test_no_crop_result_size_larger_than_the_model(tmp_path, tiny_ckpt):
    path = save(tmp_path / "texture.png", textured(256))
    frames = {}
    for on in (False, True):
        opts = AnimateOptions(crop=False, result_size=192, max_frames=2, progress=False,
                              detail=on, crop_driving="off", device="cpu")
        animate_file(path, talking_clip(), tmp_path / f"{on}/", opts, checkpoint=tiny_ckpt)
        frames[on] = frames_of(tmp_path / f"{on}")
    assert frames[True].shape == frames[False].shape == (2, 192, 192, 3)
    whole = (0, 0, 192, 192)
    photo = laplacian_variance(resize(textured(256), 192), whole)
    sharpness = {on: laplacian_variance(f[1], whole) / photo for on, f in frames.items()}
    assert sharpness[True] > 3 * sharpness[False], sharpness


@pytest.mark.slow
def test_sharp_and_seamless_on_a_real_portrait(tmp_path):
    """The bundled model on the astronaut at 3x: face sharpness >= 0.75x the photo's; detail
    only adds fine texture (the low band equals --detail off: no colour edge, no seam)."""
    photo = np.ascontiguousarray(cv2.resize(astronaut(), (1536, 1536),
                                            interpolation=cv2.INTER_CUBIC))
    path = save(tmp_path / "photo.png", photo)
    face = detect_faces(photo)[0]
    results = {}
    for on in (False, True):
        opts = AnimateOptions(max_frames=4, batch_size=4, progress=False, detail=on,
                              device="cpu")
        animate_file(path, talking_clip(), tmp_path / f"{on}/", opts)
        results[on] = frames_of(tmp_path / f"{on}").astype(np.float32)
    ratio = {on: np.mean([laplacian_variance(f.astype(np.uint8), face.box) for f in frames])
             / laplacian_variance(photo, face.box) for on, frames in results.items()}
    assert ratio[True] >= 0.75 > ratio[False], ratio
    box = detail.pixel_box(square_box(face, photo.shape))
    x0, y0, x1, y1 = box
    for on, off in zip(results[True], results[False], strict=True):
        low = cv2.GaussianBlur(on - off, (0, 0), 6)[y0:y1, x0:x1]
        assert np.abs(low).mean() < 1.0 and np.abs(low).max() < 12
    # outside the crop box the photo is untouched
    assert np.array_equal(results[True][0, :y0], photo[:y0])


def test_detail_option_in_the_cli_the_seed_command_and_the_web_form(monkeypatch):
    import importlib.util

    from fomm.cli.main import build_parser, options_from_args

    def animate_args(*extra: str):
        return options_from_args(build_parser().parse_args(["animate", "a.png", "b.mp4", *extra]))

    assert animate_args().detail is True and AnimateOptions().detail is True
    assert animate_args("--detail", "off").detail is False
    from fomm.app.api import Settings, parse_options

    assert parse_options({}, Settings()).detail is True
    assert parse_options({"detail": "false"}, Settings()).detail is False
    spec = importlib.util.spec_from_file_location(
        "seed", Path(__file__).resolve().parents[1] / "tools" / "first-order-demo.py")
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)
    calls: list[list[str]] = []
    monkeypatch.setattr("fomm.cli.main.main", calls.append)
    seed.main(["--source_image", "a.png", "--driving_video", "b.mp4", "--detail", "off"])
    seed.main(["--source_image", "a.png", "--driving_video", "b.mp4"])
    assert calls[0][calls[0].index("--detail") + 1] == "off"
    assert calls[1][calls[1].index("--detail") + 1] == "on"
