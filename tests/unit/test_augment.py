import subprocess
import sys

import numpy as np

from hmss_ray.config import AugmentConfig
from hmss_ray.data.augment import augment_batch, build_augmentation

GEOMETRY_ONLY = AugmentConfig(
    flip_prob=0.5, rotate_prob=1.0, bias_field_prob=0, gamma_prob=0, noise_prob=0
)


def _batch(n=4, size=32):
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (n, 1, size, size)).astype(np.float32)
    img[:, :, 8:20, 10:14] = 1.0  # an asymmetric block so flips and rotations show
    mask = (img > 0).astype(np.float32)
    return {"mr": img.copy(), "ct": img.copy(), "mask": mask, "case_id": np.array(["x"] * n)}


def _blocks(n=8, size=32):
    """MR and CT are -1/+1 images of an asymmetric L-shaped block; the mask is the same block."""
    mask = np.zeros((n, 1, size, size), np.float32)
    mask[:, :, 6:24, 8:14] = 1.0
    mask[:, :, 18:24, 8:26] = 1.0
    image = 2 * mask - 1
    return {"mr": image.copy(), "ct": image.copy(), "mask": mask, "case_id": np.array(["x"] * n)}


def test_mask_geometry_is_identical_to_the_mr_and_ct_geometry():
    batch = _blocks()
    out = augment_batch(batch, build_augmentation(GEOMETRY_ONLY, seed=1))
    np.testing.assert_allclose(out["mr"], out["ct"], atol=1e-6)  # same input -> same output
    moved = [not np.array_equal(out["mask"][i], batch["mask"][i]) for i in range(len(out["mask"]))]
    assert sum(moved) >= 6  # rotations (p=1) moved the samples
    for i in range(len(out["mask"])):
        mask, mr = out["mask"][i, 0], out["mr"][i, 0]
        # the mask is resampled nearest, the MR bilinearly: away from the block's edge (where the
        # MR is clearly inside or outside) the two must agree voxel for voxel
        assert set(np.unique(mask)) <= {0.0, 1.0}
        assert np.all(mask[mr > 0.5] == 1) and np.all(mask[mr < -0.5] == 0)
    assert out["case_id"].tolist() == ["x"] * 8


def test_intensity_changes_touch_only_the_mr():
    cfg = AugmentConfig(
        flip_prob=0, rotate_prob=0, bias_field_prob=1, gamma_prob=1, noise_prob=1, noise_std=0.05
    )
    batch = _batch()
    out = augment_batch(batch, build_augmentation(cfg, seed=2))
    np.testing.assert_array_equal(out["ct"], batch["ct"])
    assert not np.allclose(out["mr"], batch["mr"])
    assert out["mr"].min() >= -1 and out["mr"].max() <= 1


def test_seeded_augmentation_is_reproducible():
    a = augment_batch(_batch(), build_augmentation(AugmentConfig(), seed=3))
    b = augment_batch(_batch(), build_augmentation(AugmentConfig(), seed=3))
    np.testing.assert_array_equal(a["mr"], b["mr"])


def test_rotation_and_scale_keep_the_anatomy_in_place_and_its_size():
    # rotation about the slice's centre and a scale within 1 +- scale_range: a centred disc keeps
    # its centre and its area within the scale's bounds, in every sample
    cfg = AugmentConfig(flip_prob=0, rotate_prob=1, rotate_degrees=30, scale_range=0.1,
                        bias_field_prob=0, gamma_prob=0, noise_prob=0)  # fmt: skip
    yy, xx = np.mgrid[:64, :64]
    disc = (((yy - 31.5) ** 2 + (xx - 31.5) ** 2) < 15**2).astype(np.float32)
    batch = {k: np.repeat(disc[None, None], 8, 0) for k in ("mr", "ct", "mask")}
    out = augment_batch(batch, build_augmentation(cfg, seed=4))
    for mask in out["mask"][:, 0]:
        assert 0.9**2 * disc.sum() <= mask.sum() <= 1.1**2 * disc.sum()
        assert abs(yy[mask > 0].mean() - 31.5) < 0.5 and abs(xx[mask > 0].mean() - 31.5) < 0.5


def test_a_ray_data_worker_augments_without_importing_torch_or_monai():
    # each new Ray Data worker process pays its imports; MONAI's cost 8-12 s of CPU there
    code = (
        "import sys, numpy as np\n"
        "from hmss_ray.config import AugmentConfig\n"
        "from hmss_ray.data.augment import BatchAugmenter\n"
        "b = {k: np.zeros((2, 1, 16, 16), np.float32) for k in ('mr', 'ct', 'mask')}\n"
        "BatchAugmenter(AugmentConfig())(b)\n"
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_intensity_transforms_are_monais():
    # the transforms were MONAI's until its import cost moved them here: same results for the
    # same draws (MONAI is imported by this test only)
    from monai.transforms import AdjustContrast, RandBiasField

    from hmss_ray.data.augment import adjust_contrast, bias_field

    image = np.random.default_rng(5).uniform(0, 2, (1, 40, 48)).astype(np.float32)
    np.testing.assert_allclose(adjust_contrast(image, 1.3), AdjustContrast(1.3)(image), rtol=1e-5)
    fixed = RandBiasField(degree=3, coeff_range=(0.2, 0.2), prob=1.0)  # every coefficient 0.2
    expected = np.asarray(fixed(image))
    np.testing.assert_allclose(image * bias_field((40, 48), np.full(10, 0.2)), expected, rtol=1e-5)


def test_noise_stays_inside_the_body_and_the_bias_range_is_monais():
    from hmss_ray.data.augment import BIAS_COEFF_RANGE

    assert BIAS_COEFF_RANGE == (0.0, 0.1)  # MONAI RandBiasField's default, as the docstring says
    cfg = AugmentConfig(
        flip_prob=0, rotate_prob=0, bias_field_prob=0, gamma_prob=0, noise_prob=1, noise_std=0.1
    )
    batch = _blocks()
    out = augment_batch(batch, build_augmentation(cfg, seed=5))
    outside, inside = batch["mask"] < 0.5, batch["mask"] > 0.5
    np.testing.assert_array_equal(out["mr"][outside], -1.0)  # background exactly as inference
    assert np.abs(out["mr"][inside] - batch["mr"][inside]).max() > 0  # noise inside the body
