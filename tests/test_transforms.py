"""Property tests of the point-cloud and image augmentations in datasets/transforms.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import transforms as T


def _cloud(n=256, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [3.0, -1.0, 2.0]).astype(dtype)


def test_normalize_unit_sphere():
    pts = _cloud()
    out = T.normalize_pointcloud(pts)
    assert out.dtype == np.float32 and out.shape == pts.shape
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-6)
    assert np.linalg.norm(out, axis=1).max() == pytest.approx(1.0, abs=1e-6)


def test_normalize_rejects_degenerate_cloud():
    with pytest.raises(ValueError, match="coincide"):
        T.normalize_pointcloud(np.ones((10, 3), np.float32))


def test_random_scale_is_isotropic_and_bounded():
    pts = _cloud()
    for seed in range(20):
        out = T.random_scale(pts, np.random.default_rng(seed), lo=0.5, hi=2.0)
        ratio = out / pts
        assert np.allclose(ratio, ratio[0, 0], rtol=1e-5)
        assert 0.5 <= ratio[0, 0] <= 2.0


def test_rotate_y_preserves_norms_and_y():
    pts = _cloud()
    out = T.rotate_y(pts, np.random.default_rng(3))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(pts, axis=1), rtol=1e-5)
    np.testing.assert_array_equal(out[:, 1], pts[:, 1])
    assert not np.allclose(out[:, [0, 2]], pts[:, [0, 2]])


def test_translate_bounded_by_extent():
    pts = _cloud()
    extent = pts.max(0) - pts.min(0)
    for seed in range(20):
        out = T.random_translate(pts, np.random.default_rng(seed), translate_range=0.5)
        shift = out - pts
        np.testing.assert_allclose(shift, shift[:1].repeat(len(pts), 0), atol=1e-5)
        assert np.all(np.abs(shift[0]) <= 0.5 * extent + 1e-6)


def test_jitter_bounded_by_clip():
    pts = _cloud(2000)
    out = T.jitter_pointcloud(pts, np.random.default_rng(0), sigma=0.01, clip=0.05)
    noise = out - pts
    assert np.abs(noise).max() <= 0.05 + 1e-6
    assert 0.005 < noise.std() < 0.015
    big = T.jitter_pointcloud(pts, np.random.default_rng(0), sigma=1.0, clip=0.05)
    assert np.abs(big - pts).max() == pytest.approx(0.05, abs=1e-6)


def test_dropout_replaces_with_first_point_and_ratio_bounded():
    pts = _cloud(4000)
    ratios = []
    for seed in range(30):
        out = T.random_input_dropout(pts, np.random.default_rng(seed), max_dropout_ratio=0.875)
        assert out.shape == pts.shape
        changed = np.any(out != pts, axis=1)
        assert np.all(out[changed] == pts[0])
        ratios.append(changed.mean())
    assert max(ratios) < 0.875 + 0.03  # binomial noise on 4000 points
    assert min(ratios) < 0.3 and max(ratios) > 0.4  # the ratio itself is random
    with pytest.raises(ValueError):
        T.random_input_dropout(pts, np.random.default_rng(0), max_dropout_ratio=1.0)


def test_scale_and_translate_bounds():
    pts = np.ones((5, 3), np.float32)
    out = T.scale_and_translate(pts, np.random.default_rng(1))
    assert np.all(out >= 2 / 3 - 0.2 - 1e-6) and np.all(out <= 1.5 + 0.2 + 1e-6)


def test_transforms_do_not_modify_input_and_keep_dtype():
    for dtype in (np.float32, np.float64):
        pts = _cloud(dtype=dtype)
        before = pts.copy()
        out = T.crosspoint_point_transform()(pts, np.random.default_rng(0))
        np.testing.assert_array_equal(pts, before)
        assert out.dtype == dtype and out.shape == pts.shape and np.isfinite(out).all()


def test_pipeline_deterministic_per_seed_and_different_across_seeds():
    pts = _cloud()
    t = T.crosspoint_point_transform()
    a = t(pts, np.random.default_rng(5))
    b = t(pts, np.random.default_rng(5))
    c = t(pts, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert "random_input_dropout" in repr(t)


def test_item_rng_follows_torch_seed():
    torch.manual_seed(0)
    a = T.item_rng().uniform(size=4)
    b = T.item_rng().uniform(size=4)
    torch.manual_seed(0)
    a2 = T.item_rng().uniform(size=4)
    np.testing.assert_array_equal(a, a2)
    assert not np.allclose(a, b)


def _image(w=20, h=12):
    arr = np.zeros((h, w, 4), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]  # red ramp left -> right
    arr[..., 1] = 100
    arr[..., 3] = 255
    return Image.fromarray(arr, "RGBA").convert("RGB")


def test_eval_image_transform_shape_and_normalization():
    out = T.eval_image_transform(16)(_image(), np.random.default_rng(0))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    # Undo the ImageNet normalization: values back in [0, 1], green channel == 100/255.
    mean = torch.tensor(T.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(T.IMAGENET_STD).view(3, 1, 1)
    raw = out * std + mean
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert torch.allclose(raw[1], torch.full((16, 16), 100 / 255), atol=1e-5)


def test_train_image_transform_shape_dtype_and_randomness():
    t = T.crosspoint_image_transform(size=16)
    img = _image()
    a = t(img, np.random.default_rng(0))
    b = t(img, np.random.default_rng(0))
    c = t(img, np.random.default_rng(1))
    assert a.shape == (3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_horizontal_flip_flips():
    img = _image()
    flipped = T.RandomHorizontalFlip(p=1.0)(img, np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(flipped), np.asarray(img)[:, ::-1])
    kept = T.RandomHorizontalFlip(p=0.0)(img, np.random.default_rng(0))
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(img))


def test_color_jitter_factor_range():
    img = Image.new("RGB", (4, 4), (100, 100, 100))
    # Brightness only: a grey pixel scales by a factor in [0.6, 1.4].
    for seed in range(10):
        out = T.ColorJitter(0.4, 0.0, 0.0)(img, np.random.default_rng(seed))
        v = np.asarray(out)[0, 0, 0]
        assert 60 - 1 <= v <= 140 + 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_numpy_and_torch_paths_agree(dtype):
    x = torch.rand(3, 5, 4, dtype=dtype)
    fast = T.Normalize()(x)
    ref = T.Normalize()(x.requires_grad_()).detach()  # the torch path
    assert fast.dtype == dtype and torch.allclose(fast, ref)


def test_pointmae_scale_and_translate_is_the_originals_float32_math():
    """Point-MAE datasets/data_transforms.py PointcloudScaleAndTranslate: xyz1 ~ U(2/3, 3/2)^3, xyz2 ~ U(-0.2,
    0.2)^3, both cast to float32, pc * xyz1 + xyz2 in float32, a new draw per cloud."""
    pts = _cloud(dtype=np.float64)
    out = T.pointmae_scale_and_translate(pts, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    xyz1 = rng.uniform(low=2.0 / 3.0, high=3.0 / 2.0, size=[3]).astype(np.float32)
    xyz2 = rng.uniform(low=-0.2, high=0.2, size=[3]).astype(np.float32)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pts.astype(np.float32) * xyz1 + xyz2)
    for seed in range(30):  # per-axis factors and shifts within the ranges
        o = T.pointmae_scale_and_translate(pts, np.random.default_rng(seed)).astype(np.float64)
        scale = (o[1] - o[0]) / (pts[1] - pts[0])
        shift = o[0] - pts[0] * scale
        assert np.all((scale > 2 / 3 - 1e-4) & (scale < 1.5 + 1e-4)) and np.all(np.abs(shift) < 0.2 + 1e-4)
        assert not np.allclose(scale, scale[0])


def test_pointmae_training_augmentation_shuffles_then_scales_and_translates():
    pts = _cloud(n=64)
    out, perm = T.shuffle_pointmae_scale_translate(pts, np.random.default_rng(3))
    rng = np.random.default_rng(3)
    expected_perm = rng.permutation(64)
    np.testing.assert_array_equal(perm, expected_perm)
    np.testing.assert_array_equal(out, T.pointmae_scale_and_translate(pts[expected_perm], rng))
    assert set(T.CLASSIFICATION_AUGMENTATIONS) == {"dgcnn", "pointmae"}
    assert T.CLASSIFICATION_AUGMENTATIONS["pointmae"] is T.shuffle_pointmae_scale_translate
