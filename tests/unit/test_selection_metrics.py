"""The search's validation metrics: body only, in HU, per patient, and an unbiased KID."""

import numpy as np
import pytest
import torch

from hmss_ray.config import ExperimentConfig
from hmss_ray.metrics import SliceMetrics, synthrad_metrics
from hmss_ray.metrics.features import RandomFeatures
from hmss_ray.metrics.kid import KidTerm, kid
from hmss_ray.metrics.objective import objective
from hmss_ray.metrics.patients import PatientMetrics

HU = (-1024.0, 3000.0)
SIZE = 32


def unit(hu: torch.Tensor) -> torch.Tensor:
    return (hu - HU[0]) / (HU[1] - HU[0]) * 2 - 1


def phantom(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(CT in HU, body mask) slices: an ellipse of soft tissue with a bone disc, air around."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    cts, masks = [], []
    for _ in range(n):
        a, b = 9 + 4 * torch.rand(1, generator=g), 7 + 4 * torch.rand(1, generator=g)
        body = ((yy - 16) / a) ** 2 + ((xx - 16) / b) ** 2 <= 1
        bone = (yy - 16) ** 2 + (xx - 14) ** 2 <= 6
        ct = torch.full((SIZE, SIZE), -1024.0)
        ct[body] = 40 + 20 * torch.randn(int(body.sum()), generator=g)
        ct[bone] = 900.0
        cts.append(ct)
        masks.append(body.float())
    return torch.stack(cts)[:, None], torch.stack(masks)[:, None]


def scored(ct, sct, mask, cases, cfg, extractor):
    patients = PatientMetrics(HU)
    patients.update(unit(ct), unit(sct), mask, cases)
    term = KidTerm(extractor, len(ct))
    term.update(unit(ct), unit(sct), mask, 0)
    metrics = {**patients.compute(), **term.compute()}
    return {**metrics, "score": objective(metrics, cfg.tune)}


def test_the_background_does_not_move_the_validation_score():
    ct, mask = phantom(24, seed=0)
    g = torch.Generator().manual_seed(1)
    body_sct = ct + 30 * torch.randn(ct.shape, generator=g)  # one sCT inside the body
    outside = mask < 0.5
    backgrounds = {
        "-1024": torch.full_like(ct, -1024.0),
        "-1004": torch.full_like(ct, -1004.0),
        "-1000+-10": -1000 + 10 * torch.randn(ct.shape, generator=g),
    }
    cfg, extractor = ExperimentConfig(), RandomFeatures()
    cases = ["p1"] * 12 + ["p2"] * 12
    scores, canvas_ssim = {}, {}
    for name, background in backgrounds.items():
        sct = torch.where(outside, background, body_sct)
        scores[name] = scored(ct, sct, mask, cases, cfg, extractor)
        old = SliceMetrics(HU)
        old.update(unit(ct), unit(sct), mask)
        canvas_ssim[name] = old.compute()["ssim"]
    values = [s["score"] for s in scores.values()]
    assert max(values) - min(values) < 1e-9  # the stated bound: exactly equal up to round-off
    assert all(s["patients"] == 2 for s in scores.values())
    # the old whole-canvas SSIM moved by far more for the same change
    assert max(canvas_ssim.values()) - min(canvas_ssim.values()) > 0.05


def test_mae_and_psnr_are_the_challenge_values_per_patient():
    ct, mask = phantom(20, seed=2)
    g = torch.Generator().manual_seed(3)
    sct = torch.where(mask > 0.5, ct + 50 * torch.randn(ct.shape, generator=g), -900.0)
    patients = PatientMetrics(HU)
    cases = ["a"] * 10 + ["b"] * 10
    for start in range(0, 20, 6):  # batches that cut across patients
        part = slice(start, start + 6)
        patients.update(unit(ct[part]), unit(sct[part]), mask[part], cases[start : start + 6])
    rows = patients.per_patient()
    for case, part in (("a", slice(0, 10)), ("b", slice(10, 20))):
        expected = synthrad_metrics(
            ct[part, 0].numpy(), sct[part, 0].numpy(), mask[part, 0].numpy()
        )
        assert rows[case]["mae_hu"] == pytest.approx(expected["mae"], rel=1e-6)
        assert rows[case]["psnr"] == pytest.approx(expected["psnr"], rel=1e-6)
        assert 0 < rows[case]["ssim"] < 1
    mean_mae = np.mean([rows["a"]["mae_hu"], rows["b"]["mae_hu"]])
    assert patients.compute()["mae_hu"] == pytest.approx(mean_mae)  # mean over patients


def test_kid_of_two_samples_of_one_distribution_is_near_zero_at_the_validation_size():
    extractor = RandomFeatures()
    n = 128  # a small validation set: a few patients' slices
    ct_a, mask_a = phantom(n, seed=10)
    ct_b, mask_b = phantom(n, seed=11)
    feats = lambda ct, mask: extractor.pooled(unit(torch.where(mask > 0.5, ct, -1024.0)))  # noqa: E731
    a, b = feats(ct_a, mask_a).double(), feats(ct_b, mask_b).double()
    same, same_std = kid(a, b)
    assert abs(same) < 3 * same_std and same_std < 0.05
    brighter = feats(torch.where(mask_b > 0.5, ct_b + 150, ct_b), mask_b).double()
    shifted, _ = kid(a, brighter)
    assert shifted > 5 * same_std  # a real difference stands out of the noise
