"""Point-cloud and image augmentations of CrossPoint, with explicit random generators.

Every transform is a callable ``t(x, rng)`` where ``rng`` is a ``numpy.random.Generator``; point
transforms take and return an (N, 3) float array (float32 or float64, dtype preserved, input
never modified in place). Image transforms take a ``PIL.Image`` and the last step returns a
float32 tensor (3, S, S). :class:`Compose` chains either kind.

Randomness: loaders call :func:`item_rng` once per item. It seeds a numpy Generator from torch's
RNG, so data is reproducible under ``torch.manual_seed`` and differs between DataLoader workers
(each worker's torch RNG is seeded with ``base_seed + worker_id`` by PyTorch).

The pretraining pipeline (:func:`crosspoint_point_transform`) follows ``trans_1``/``trans_2`` of
the original ``datasets/data.py`` (classes from ``datasets/data_utils.py``): normalize to the
unit sphere, isotropic scale U(0.5, 2), rotation about the y axis by U(0, 2*pi), translation by
U(-0.5, 0.5) times the per-axis extent, Gaussian jitter (sigma 0.01, clipped to 0.05), random
input dropout (ratio U(0, 0.875), dropped points replaced by the first point).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance

__all__ = [
    "Compose",
    "item_rng",
    "normalize_pointcloud",
    "random_scale",
    "rotate_y",
    "random_translate",
    "jitter_pointcloud",
    "random_input_dropout",
    "scale_and_translate",
    "scale_translate_shuffle",
    "pointmae_scale_and_translate",
    "shuffle_pointmae_scale_translate",
    "CLASSIFICATION_AUGMENTATIONS",
    "crosspoint_point_transform",
    "Resize",
    "ColorJitter",
    "RandomHorizontalFlip",
    "ToTensor",
    "Normalize",
    "crosspoint_image_transform",
    "eval_image_transform",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def item_rng() -> np.random.Generator:
    """A fresh numpy Generator seeded from torch's global RNG (consumes one torch draw).

    Deterministic under ``torch.manual_seed``; in DataLoader workers it differs per worker and
    per epoch automatically because PyTorch seeds each worker's torch RNG differently.
    """
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return np.random.default_rng(seed)


class Compose:
    """Apply callables ``t(x, rng)`` in order, passing the same ``rng`` to each."""

    def __init__(self, transforms: Sequence[Callable[[Any, np.random.Generator], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: Any, rng: np.random.Generator) -> Any:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"{type(self).__name__}([\n    {inner}\n])"


def _as_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise ValueError(f"expected a non-empty point array of shape (N, 3), got {points.shape}")
    if not np.issubdtype(points.dtype, np.floating):
        points = points.astype(np.float32)
    return points


# ----------------------------------------------------------------------------------------------
# Point-cloud transforms: f(points (N, 3), rng) -> (N, 3), same dtype, new array
# ----------------------------------------------------------------------------------------------

def normalize_pointcloud(points: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Centre on the centroid and divide by the largest point norm (max norm becomes 1).

    ``rng`` is unused (accepted for a uniform transform signature).
    Raises ValueError for a cloud whose points all coincide (the original divides by zero).
    """
    points = _as_points(points)
    centred = points - points.mean(axis=0, keepdims=True)
    m = np.sqrt((centred**2).sum(axis=1)).max()
    # Differs from the original: PointcloudNormalize divides by zero (NaN output) here.
    if not m > 0:
        raise ValueError("cannot normalize a point cloud whose points all coincide")
    return (centred / m).astype(points.dtype, copy=False)


def random_scale(points: np.ndarray, rng: np.random.Generator, lo: float = 0.5,
                 hi: float = 2.0) -> np.ndarray:
    """Multiply all coordinates by one factor drawn from U(lo, hi) (isotropic, as the original
    ``PointcloudScale``; paper pipeline: lo=0.5, hi=2)."""
    points = _as_points(points)
    return points * points.dtype.type(rng.uniform(lo, hi))


def rotate_y(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate about the y (up) axis by an angle drawn from U(0, 2*pi).

    Same matrix as the original ``angle_axis(theta, [0, 1, 0])`` applied as ``points @ R.T``:
    R = [[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]]. Preserves norms and the y coordinate.
    """
    points = _as_points(points)
    theta = rng.uniform() * 2.0 * math.pi
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=points.dtype)
    return points @ rot.T


def random_translate(points: np.ndarray, rng: np.random.Generator,
                     translate_range: float = 0.5) -> np.ndarray:
    """Shift by U(-r, r) times the cloud's extent (max - min) on each axis (original
    ``PointcloudTranslate``; paper pipeline: r=0.5)."""
    points = _as_points(points)
    extent = points.max(axis=0) - points.min(axis=0)  # (3,)
    shift = rng.uniform(-translate_range, translate_range, size=3) * extent
    return points + shift.astype(points.dtype)


def jitter_pointcloud(points: np.ndarray, rng: np.random.Generator, sigma: float = 0.01,
                      clip: float = 0.05) -> np.ndarray:
    """Add per-point Gaussian noise N(0, sigma^2) clipped to [-clip, clip] (original
    ``PointcloudJitter``: sigma 0.01, clip 0.05)."""
    points = _as_points(points)
    noise = np.clip(rng.normal(0.0, sigma, size=points.shape), -clip, clip)
    return points + noise.astype(points.dtype)


def random_input_dropout(points: np.ndarray, rng: np.random.Generator,
                         max_dropout_ratio: float = 0.875) -> np.ndarray:
    """Replace a random subset of points by the first point (the count stays N).

    The ratio is drawn from U(0, max_dropout_ratio); each point is dropped independently with
    that probability (original ``PointcloudRandomInputDropout``, max 0.875).
    """
    if not 0.0 <= max_dropout_ratio < 1.0:
        raise ValueError(f"max_dropout_ratio must be in [0, 1), got {max_dropout_ratio}")
    points = _as_points(points).copy()
    ratio = rng.uniform() * max_dropout_ratio
    drop = rng.uniform(size=points.shape[0]) <= ratio  # (N,)
    points[drop] = points[0]
    return points


def scale_and_translate(points: np.ndarray, rng: np.random.Generator, scale_low: float = 2.0 / 3.0,
                        scale_high: float = 1.5, shift_range: float = 0.2) -> np.ndarray:
    """Per-axis scale U(scale_low, scale_high) then shift U(-shift_range, shift_range)
    (the DGCNN/CrossPoint ``translate_pointcloud`` used for part-segmentation training)."""
    points = _as_points(points)
    scale = rng.uniform(scale_low, scale_high, size=3)
    shift = rng.uniform(-shift_range, shift_range, size=3)
    return (points * scale + shift).astype(points.dtype, copy=False)


def scale_translate_shuffle(points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The DGCNN paper's training augmentation: :func:`scale_and_translate`, then the points in a random
    order. Returns ``(points (N, 3) in the new order, perm (N,))``, so per-point labels can follow
    (``labels[perm]``)."""
    points = scale_and_translate(points, rng)
    perm = rng.permutation(points.shape[0])  # (N,)
    return points[perm], perm


def pointmae_scale_and_translate(points: np.ndarray, rng: np.random.Generator, scale_low: float = 2.0 / 3.0,
                                 scale_high: float = 3.0 / 2.0, translate_range: float = 0.2) -> np.ndarray:
    """Point-MAE's ``PointcloudScaleAndTranslate`` (``datasets/data_transforms.py``, defaults 2/3, 3/2, 0.2):
    per-axis scale U(scale_low, scale_high) and shift U(-translate_range, translate_range), both drawn in float64
    and cast to float32, then ``points * scale + shift`` in float32 (the original's ``torch.mul`` on the GPU).

    The original transforms a (B, N, 3) batch in place on the GPU, drawing a new scale and shift for each
    cloud in a Python loop (``tools/runner_finetune.py`` line 145, ``train_transforms``, the same for ModelNet40
    and ScanObjectNN); one call per cloud here is the same distribution. DGCNN's ``translate_pointcloud``
    (:func:`scale_and_translate`) draws from the same ranges but computes in float64 before the cast.
    Returns a new (N, 3) float32 array.
    """
    points = np.asarray(_as_points(points), dtype=np.float32)
    scale = rng.uniform(scale_low, scale_high, size=3).astype(np.float32)  # (3,)
    shift = rng.uniform(-translate_range, translate_range, size=3).astype(np.float32)  # (3,)
    return points * scale + shift


def shuffle_pointmae_scale_translate(points: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Point-MAE's fine-tuning augmentation of one training cloud: the points in a random order (its datasets'
    ``np.random.shuffle(pt_idxs)`` for the train subset, ``ScanObjectNNDataset.py`` line 36), then
    :func:`pointmae_scale_and_translate`. Returns ``(points (N, 3) float32, perm (N,))``.

    Not reproduced: the runner's resampling (``runner_finetune.py`` lines 127-143: farthest-point sampling of
    1.2 x N points, then N of them at random). On ScanObjectNN's 2048 stored points with N = 2048 it is one
    more random permutation (nothing to add); on ModelNet40 it picks 1024 of 8192 resampled points, while the
    HDF5 ModelNet40 used here stores 2048 points and the first N are taken.
    """
    perm = rng.permutation(np.asarray(points).shape[0])  # (N,)
    return pointmae_scale_and_translate(np.asarray(points)[perm], rng), perm


# Recipe name (util.presets.RECIPES "augmentation") -> per-cloud training augmentation
# f(points (N, 3), rng) -> (points (N, 3), perm (N,)).
CLASSIFICATION_AUGMENTATIONS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "dgcnn": scale_translate_shuffle,
    "pointmae": shuffle_pointmae_scale_translate,
}


class _Partial:
    """A picklable, readable ``functools.partial`` for point transforms."""

    def __init__(self, fn: Callable[..., np.ndarray], **kwargs: Any) -> None:
        self.fn, self.kwargs = fn, kwargs

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.fn(points, rng, **self.kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.fn.__name__}({args})"


def crosspoint_point_transform(scale_lo: float = 0.5, scale_hi: float = 2.0,
                               translate_range: float = 0.5, jitter_sigma: float = 0.01,
                               jitter_clip: float = 0.05,
                               max_dropout_ratio: float = 0.875) -> Compose:
    """The CrossPoint pretraining augmentation (defaults = the original ``trans_1``/``trans_2``).

    normalize -> scale U(0.5, 2) -> rotate about y -> translate 0.5 x extent ->
    jitter (0.01, clip 0.05) -> random input dropout (max 0.875).
    Call as ``t(points (N, 3), rng) -> (N, 3)``.
    """
    return Compose([
        _Partial(normalize_pointcloud),
        _Partial(random_scale, lo=scale_lo, hi=scale_hi),
        _Partial(rotate_y),
        _Partial(random_translate, translate_range=translate_range),
        _Partial(jitter_pointcloud, sigma=jitter_sigma, clip=jitter_clip),
        _Partial(random_input_dropout, max_dropout_ratio=max_dropout_ratio),
    ])


# ----------------------------------------------------------------------------------------------
# Image transforms (PIL + torch, no torchvision): t(img, rng)
# ----------------------------------------------------------------------------------------------

class Resize:
    """Resize a PIL image to (size, size) with bilinear filtering (PIL antialiases when
    downscaling, like torchvision's ``Resize`` on PIL images)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        return img.resize((self.size, self.size), Image.BILINEAR)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class ColorJitter:
    """Random brightness, contrast and saturation, each with a factor from
    U(1 - s, 1 + s), applied in a random order via ``PIL.ImageEnhance`` (the same operations
    torchvision's ``ColorJitter`` uses on PIL images; hue is not changed)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4) -> None:
        self.strengths = (brightness, contrast, saturation)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
        for i in rng.permutation(3):
            s = self.strengths[i]
            if s > 0:
                factor = rng.uniform(max(0.0, 1.0 - s), 1.0 + s)
                img = enhancers[i](img).enhance(factor)
        return img

    def __repr__(self) -> str:
        b, c, s = self.strengths
        return f"ColorJitter(brightness={b}, contrast={c}, saturation={s})"


class RandomHorizontalFlip:
    """Mirror left-right with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if rng.uniform() < self.p:
            return img.transpose(Image.FLIP_LEFT_RIGHT)
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ToTensor:
    """PIL image -> float32 tensor (3, H, W) in [0, 1] (converted to RGB first)."""

    def __call__(self, img: Image.Image, rng: np.random.Generator | None = None) -> torch.Tensor:
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(255.0)  # (H, W, 3)
        # numpy rather than torch ops: small multi-threaded torch ops are slow on a busy CPU.
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))  # (3, H, W)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """(x - mean) / std per channel of a (3, H, W) tensor."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        if x.device.type == "cpu" and not x.requires_grad:
            # numpy path: same result, avoids torch intra-op threading overhead on tiny ops.
            arr = x.numpy()
            mean = np.asarray(self.mean, dtype=arr.dtype).reshape(3, 1, 1)  # (3,1,1)
            std = np.asarray(self.std, dtype=arr.dtype).reshape(3, 1, 1)  # (3,1,1)
            return torch.from_numpy((arr - mean) / std)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)  # (3,1,1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(3, 1, 1)  # (3,1,1)
        return (x - mean) / std

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


def crosspoint_image_transform(size: int = 224) -> Compose:
    """Training image pipeline of the original ``train_crosspoint.py``: resize to (size, size),
    color jitter 0.4 (brightness/contrast/saturation), horizontal flip p=0.5, to tensor,
    ImageNet normalize. Call as ``t(img, rng) -> float32 tensor (3, size, size)``."""
    return Compose([Resize(size), ColorJitter(0.4, 0.4, 0.4), RandomHorizontalFlip(0.5),
                    ToTensor(), Normalize()])


def eval_image_transform(size: int = 224) -> Compose:
    """Deterministic image pipeline: resize, to tensor, ImageNet normalize -> (3, size, size)."""
    return Compose([Resize(size), ToTensor(), Normalize()])
