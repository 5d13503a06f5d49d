"""Cost of the SynthRAD2025 metrics on a whole thorax-sized volume, against the 2023 metrics.

A pelvis phantom at 404x280x100 voxels (11.3 M, about a thorax at 1x1x3 mm) and a blurred, noisy
sCT; times ``synthrad2025_metrics`` (MAE, PSNR, 5-level masked MS-SSIM), ``synthrad_metrics``
(2023: one SSIM level) and the threshold Dice/HD95, in one process, one after the other.

    flock /tmp/hmss-cpu.lock python -m bench.synthrad2025_metrics [--shape X Y Z] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from hmss_ray import metrics
from hmss_ray.data.phantom import case_ids, make_case
from hmss_ray.metrics.segmentation import spacing_of


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run(shape: tuple[int, int, int]) -> dict:
    case = make_case(case_ids("pelvis", 1)[0], shape=shape)
    rng = np.random.default_rng(0)
    sct = ndimage.gaussian_filter(case.ct.astype(np.float32), 1.0)
    sct += rng.normal(0, 40, sct.shape).astype(np.float32)
    sct[case.mask == 0] = -1000
    m2025, t2025 = timed(metrics.synthrad2025_metrics, case.ct, sct, case.mask)
    m2023, t2023 = timed(metrics.synthrad_metrics, case.ct, sct, case.mask)
    seg = metrics.ThresholdSegmenter()

    def geometric():
        labels = [seg(v, case.mask, case.affine) for v in (case.ct, sct)]
        return metrics.overlap_metrics(*labels, spacing_of(case.affine), seg.names)

    geo, tgeo = timed(geometric)
    return {
        "shape": list(case.ct.shape),
        "voxels_m": case.ct.size / 1e6,
        "synthrad2025_s": t2025,
        "synthrad2023_s": t2023,
        "ratio_2025_vs_2023": t2025 / t2023,
        "dice_hd95_thresholds_s": tgeo,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "metrics_2025": m2025,
        "metrics_2023": m2023,
        "geometric": geo,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(404, 280, 100))
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    result = run(tuple(args.shape))
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
