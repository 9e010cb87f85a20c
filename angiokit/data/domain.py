"""Domain adaptation without labels: synthetic vessels on real backgrounds, real frames' style.

    CompositeOnRealBackgroundd(backgrounds=files)   the synthetic vessels (their own line integral,
                                                    ``synthesize(..., vessel_layer=True)``) drawn
                                                    into a vessel-free real frame; the label stays
    RandFourierStyled(style_images=files)           the low spatial frequencies' amplitude of a real
                                                    frame (Fourier domain adaptation)

Both read unlabelled real frames (PNG / DICOM / NIfTI, a frame each: its maximum-contrast one)
through ``RealFramePool``. None of them needs a label, so neither may be given a test set's
frames: the label-free recipe (the segmentation bundle's ``configs/label_free.json``) reads
ARCADE's training frames only.

In ``angiokit.data`` (not ``transforms``): they read real frames with its readers. Written here
because MONAI has neither: FDA is Yang & Soatto (CVPR 2020), used on angiograms
by FreeCOS (Shi et al., ICCV 2023) to blend curvilinear structures into real backgrounds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from scipy import ndimage

Range = Tuple[float, float]


def _range(value, name: str) -> Range:
    low, high = (value, value) if np.isscalar(value) else tuple(value)
    if not 0 <= low <= high:
        raise ValueError(f"{name} must be a number or a (low, high) range with 0 <= low <= high, got {value!r}")
    return float(low), float(high)


def normalise_frame(frame: np.ndarray) -> np.ndarray:
    """[H, W] -> float32 in [0, 1] by the 0.5 / 99.5 percentiles: the bundle's own scaling
    (MONAI's ``ScaleIntensityRangePercentiles``, as in its train / evaluate configs)."""
    from monai.transforms import ScaleIntensityRangePercentiles

    scaled = ScaleIntensityRangePercentiles(0.5, 99.5, 0.0, 1.0, clip=True)(np.asarray(frame, dtype=np.float32)[None])
    return np.asarray(scaled, dtype=np.float32)[0]


def remove_vessels(frame: np.ndarray, max_width_px: float, threshold: Optional[float] = None) -> np.ndarray:
    """A contrast-filled real frame [H, W] -> the same frame without its dark tubular structures.

    A grey closing with a disc wider than the widest vessel fills every dark structure narrower
    than the disc from its surroundings (vessels, and the catheter); only pixels the closing lifts
    by more than ``threshold`` (default: 3 noise sigmas, Immerkaer's estimate) are replaced, with
    the closing smoothed and the frame's own noise added, so the background keeps its texture.
    """
    from .synthetic.stats import noise_sigma

    a = np.asarray(frame, dtype=np.float32)
    radius = max(1, int(np.ceil(max_width_px / 2.0)))
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    closed = ndimage.grey_closing(a, footprint=(yy**2 + xx**2) <= radius**2)
    sigma = noise_sigma(a)
    lift = closed - a
    fill = lift > (3.0 * sigma if threshold is None else threshold)
    fill = ndimage.binary_dilation(fill, iterations=1)
    smooth = ndimage.gaussian_filter(closed, radius / 2.0)
    rng = np.random.default_rng(int(a.size))  # fixed: the same frame gives the same background
    out = a.copy()
    out[fill] = smooth[fill] + sigma * rng.standard_normal(int(fill.sum())).astype(np.float32)
    return out


class RealFramePool:
    """Unlabelled real frames read on demand at a given size, in [0, 1] (0.5 / 99.5 percentiles),
    cached; ``vessel_free`` ones with ``remove_vessels`` applied (``max_width_px``: the widest
    vessel in a 512 px frame, scaled to the output size)."""

    def __init__(self, files: Sequence[str], max_width_px: float = 24.0, cache_size: int = 256):
        self.files = [str(f) for f in files]
        if not self.files:
            raise ValueError("RealFramePool needs at least one real frame (backgrounds / style_images are empty)")
        self.max_width_px, self.cache_size = float(max_width_px), int(cache_size)
        self._cache: "OrderedDict[tuple, np.ndarray]" = OrderedDict()  # a dict, not lru_cache: picklable for workers

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int, size: Tuple[int, int], vessel_free: bool) -> np.ndarray:
        from .errors import AngioDataError
        from .readers import load_frame

        path = self.files[index]
        try:
            frame = load_frame(path)[0]
        except Exception as error:  # an unreadable file is named, not a bare reader error
            raise AngioDataError(path, f"could not read as a real background / style frame: {error}") from error
        frame = normalise_frame(frame)
        if tuple(frame.shape) != tuple(size):
            t = torch.nn.functional.interpolate(torch.from_numpy(frame)[None, None], size=tuple(size), mode="area" if frame.shape[0] > size[0] else "bilinear")
            frame = t[0, 0].numpy()
        if vessel_free:
            # at the output size: the closing costs the square of its disc
            frame = np.clip(remove_vessels(frame, self.max_width_px * size[0] / 512.0), 0.0, 1.0)
        frame.setflags(write=False)
        return frame

    def get(self, index: int, size: Tuple[int, int], vessel_free: bool = False) -> np.ndarray:
        key = (int(index), int(size[0]), int(size[1]), bool(vessel_free))
        if key not in self._cache:
            self._cache[key] = self._read(key[0], key[1:3], key[3])
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[key]


def unlabelled_files(spec: str) -> list:
    """Unlabelled real frames from comma-separated globs and / or datalist .json files (all their
    splits' images). Empty: an error that names the option (``real_unlabelled``)."""
    from .segmentation import inference_items

    parts = [p.strip() for p in str(spec or "").split(",") if p.strip()]
    if not parts:
        raise ValueError("real_unlabelled is empty: give unlabelled real frames as a glob or a datalist .json (never a test set's frames)")
    files = []
    for part in parts:
        items = inference_items(datalist=part) if part.endswith(".json") else inference_items(input_glob=part)
        files += [it["image"] for it in items]
    return files


def _pool(frames) -> RealFramePool:
    if isinstance(frames, RealFramePool):
        return frames
    return RealFramePool(unlabelled_files(frames) if isinstance(frames, str) else list(frames))


def _random_view(rng: np.random.RandomState, frame: np.ndarray) -> np.ndarray:
    """One of the frame's 8 flips / quarter turns (more backgrounds from few frames)."""
    out = np.rot90(frame, int(rng.randint(4)))
    return np.ascontiguousarray(out[:, ::-1] if rng.rand() < 0.5 else out)


class CompositeOnRealBackgroundd(Randomizable, MapTransform):
    """Replace a synthetic frame by its vessels drawn into a vessel-free real frame.

    The vessels are the engine's own line integral (``layer_key``: [1, H, W]), so wide proximal
    segments stay darker than thin distal ones as in the synthetic frame; displayed angiograms
    are close to log-compressed, so the layer is subtracted in display units:
    ``image = background - contrast * (layer / median(layer)) ** gamma`` (the median over the
    vessel pixels), both drawn per sample (a gamma below 1 narrows the gap between wide and thin
    vessels, which display processing sharpens in real frames), the vessel term blurred by
    ``blur_px`` (the detector's unsharpness); the noise is the real background's own. The label
    is not touched (the vessels are where they were); ``layer_key`` is removed unless ``keep_layer``.

    Args:
        keys: the image key.
        backgrounds: real frames (files, a glob, a datalist .json, or a ``RealFramePool``).
        prob: chance of compositing a sample (else it stays the synthetic frame).
        contrast: the darkening of the median vessel pixel, in [0, 1] display units (wide vessels
            are darker: their line integral is longer).
        gamma: exponent of the relative line integral.
        blur_px: Gaussian sigma of the vessel term, pixels at the sample's size.
        skip_without_layer: pass items without ``layer_key`` through (real frames mixed with
            synthetic ones); else they are an error.
    """

    def __init__(self, keys: KeysCollection = "image", backgrounds=(), layer_key: str = "vessel_layer", prob: float = 1.0,
                 contrast=(0.08, 0.25), gamma=(0.6, 1.0), blur_px=(0.3, 0.9), keep_layer: bool = False, skip_without_layer: bool = False,
                 allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.skip_without_layer = bool(skip_without_layer)
        self.pool = _pool(backgrounds)
        self.layer_key, self.prob, self.keep_layer = layer_key, float(prob), bool(keep_layer)
        self.contrast, self.gamma, self.blur_px = _range(contrast, "contrast"), _range(gamma, "gamma"), _range(blur_px, "blur_px")

    def randomize(self, data=None) -> None:
        self._do = self.R.rand() < self.prob
        self._index = int(self.R.randint(len(self.pool)))
        self._contrast = self.R.uniform(*self.contrast)
        self._gamma = self.R.uniform(*self.gamma)
        self._blur = self.R.uniform(*self.blur_px)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        if self.layer_key not in d:
            if self.skip_without_layer:
                return d  # a real item of a mixed dataset (self-training's pseudo-labelled frames)
            raise KeyError(f"CompositeOnRealBackgroundd needs the vessels' line integral under {self.layer_key!r} (the synthetic dataset's vessel_layer=True)")
        layer = d[self.layer_key] if self.keep_layer else d.pop(self.layer_key)
        self.randomize()
        if not self._do:
            return d
        layer = np.asarray(torch.as_tensor(layer).detach().cpu(), dtype=np.float32)
        for key in self.key_iterator(d):
            image = d[key]
            size = tuple(image.shape[-2:])
            background = _random_view(self.R, self.pool.get(self._index, size, vessel_free=True))
            vessels = layer.reshape(-1, *size).sum(0)
            scale = np.median(vessels[vessels > 0]) if (vessels > 0).any() else 1.0
            relative = np.clip(vessels / max(scale, 1e-6), 0.0, None) ** self._gamma
            vessels = ndimage.gaussian_filter(relative, self._blur) * self._contrast
            composite = np.clip(background - vessels, 0.0, 1.0).astype(np.float32)[None]
            out = torch.from_numpy(composite).expand(image.shape[0], *size).clone()
            d[key] = MetaTensor(out, meta=dict(getattr(image, "meta", {}))) if isinstance(image, MetaTensor) else out
        return d


def fourier_style(source: torch.Tensor, style: torch.Tensor, beta: float) -> torch.Tensor:
    """Fourier domain adaptation (Yang & Soatto, CVPR 2020): ``source`` [..., H, W] with the
    amplitude of its lowest spatial frequencies (a centred square of half-width
    ``beta * min(H, W)``) taken from ``style``; the phase, which holds the structures, is kept."""
    if source.shape[-2:] != style.shape[-2:]:
        raise ValueError(f"fourier_style needs frames of one size, got {tuple(source.shape[-2:])} and {tuple(style.shape[-2:])}")
    f_src = torch.fft.fftshift(torch.fft.fft2(source.float()), dim=(-2, -1))
    f_sty = torch.fft.fftshift(torch.fft.fft2(style.float()), dim=(-2, -1))
    h, w = source.shape[-2:]
    b = int(np.floor(min(h, w) * float(beta)))
    amplitude = f_src.abs()
    cy, cx = h // 2, w // 2
    amplitude[..., cy - b : cy + b + 1, cx - b : cx + b + 1] = f_sty.abs().expand_as(f_src)[..., cy - b : cy + b + 1, cx - b : cx + b + 1]
    mixed = torch.polar(amplitude, f_src.angle())
    return torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).real.to(source.dtype)


class RandFourierStyled(Randomizable, MapTransform):
    """With probability ``prob``: the image in the style of a random unlabelled real frame
    (``fourier_style`` with ``beta`` drawn from its range; FDA's beta 0.01 - 0.09 at 512 px),
    clipped to [0, 1]. Geometry, and so the label, is unchanged."""

    def __init__(self, keys: KeysCollection = "image", style_images=(), beta=(0.005, 0.03), prob: float = 0.5, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.pool = _pool(style_images)
        self.beta, self.prob = _range(beta, "beta"), float(prob)

    def randomize(self, data=None) -> None:
        self._do = self.R.rand() < self.prob
        self._index = int(self.R.randint(len(self.pool)))
        self._beta = self.R.uniform(*self.beta)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]):
        d = dict(data)
        self.randomize()
        if not self._do:
            return d
        for key in self.key_iterator(d):
            image = d[key]
            style = torch.from_numpy(_random_view(self.R, self.pool.get(self._index, tuple(image.shape[-2:]))))
            source = image.as_tensor() if isinstance(image, MetaTensor) else torch.as_tensor(image)
            styled = fourier_style(source.float(), style, self._beta).clamp(0.0, 1.0)
            d[key] = MetaTensor(styled, meta=dict(image.meta)) if isinstance(image, MetaTensor) else styled
        return d


__all__ = ["CompositeOnRealBackgroundd", "RandFourierStyled", "RealFramePool", "fourier_style", "normalise_frame", "remove_vessels", "unlabelled_files"]
