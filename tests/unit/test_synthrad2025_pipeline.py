"""SynthRAD2025 end to end, as a user runs it: MetaImage data in the 2025 layout -> prepare -> a
tiny training (the single-process loop, no Ray) -> evaluate with the 2025 metrics in the report.

Also: a report over 2023 and 2025 cases together shows each release's metrics for its own cases.
The data is ``tests/layout2025.py``'s (real ``.mha`` files); the model is tiny and barely trained,
so only the plumbing and the numbers' agreement with ``hmss_ray.metrics`` are asserted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from hmss_ray import metrics
from hmss_ray import prepare as prepare_cli
from hmss_ray.config import load_config
from hmss_ray.data import phantom, synthrad
from hmss_ray.data.manifest import read_manifest
from hmss_ray.data.shards import iter_batches
from hmss_ray.evaluate import __main__ as evaluate_cli
from hmss_ray.io import Volume, read_volume, write_volume
from hmss_ray.metrics.segmentation import spacing_of
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.train.local import run_local
from tests.layout2025 import write_layout

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "configs" / "demo.yaml"
OVERRIDES = [
    "data.regions=[HN, TH, AB]",
    "data.hu_range=[-1024, 3071]",
    "train.stage_epochs=[1, 0, 1]",
    "train.steps_per_epoch=3",
    "train.batch_size=4",
    "metrics.fid_max_slices=16",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("pipeline2025")
    data, shards = root / "data", str(root / "shards")
    write_layout(data, per_region=3, mr_only=1, shape=(44, 40, 10))
    corrupt = data / "Task1" / "TH" / "1THE005"  # a download that went wrong: reported, skipped
    corrupt.mkdir()
    (corrupt / "mr.mha").write_bytes(b"not a MetaImage\n" * 16)
    args = ["--data", str(data), "-o", shards, "--config", str(CONFIG), "--quiet"]
    assert prepare_cli.main([*args, *(a for o in OVERRIDES for a in ("--set", o))]) == 0
    cfg = load_config(CONFIG, OVERRIDES)
    run = run_local(cfg, lambda epoch: iter_batches(shards, "train", 4), epochs=2)
    directory = ckpt.save_checkpoint(root / "ckpt", generator=run.generator, cfg=cfg)
    entry = ckpt.write_registry_entry(
        directory, str(root / "registry"), "tiny2025", metrics={}, winner={"trial_id": "local"}
    )
    out = root / "report"
    argv = ["--model", entry, "--data", str(data), "--shards", shards, "--split", "test"]
    assert evaluate_cli.main([*argv, "-o", str(out), "--device", "cpu"]) == 0
    return {"data": data, "shards": shards, "out": out, "cfg": cfg, "steps": len(run.steps)}


def test_prepare_split_the_2025_cases_and_skipped_the_broken_one(pipeline: dict) -> None:
    manifest = read_manifest(pipeline["shards"])
    assert [s.case_id for s in manifest.skipped] == ["1THE005"]
    assert manifest.inference_only == ["1ABD004", "1HND004", "1THD004"]
    assert manifest.hu_range == [-1024.0, 3071.0]
    regions = {manifest.cases[c].region for c in manifest.case_ids("test")}
    assert regions == {"HN", "TH", "AB"}  # stratified: every region has test patients
    assert pipeline["steps"] > 0  # the loop trained on the 2025 shards


def test_report_shows_the_2025_metrics_equal_to_hmss_metrics(pipeline: dict) -> None:
    out, cfg = pipeline["out"], pipeline["cfg"]
    table = pd.read_csv(out / "per_patient.csv", dtype={"case_id": str})
    test_ids = read_manifest(pipeline["shards"]).case_ids("test")
    assert sorted(table["case_id"]) == test_ids
    assert {"ms_ssim", "dice", "hd95", "dice_bone", "hd95_bone"} <= set(table.columns)
    assert "ssim" not in table.columns  # the 2023 SSIM is not a 2025 metric
    segmenter = metrics.ThresholdSegmenter(bone_hu=cfg.metrics.bone_threshold_hu)
    for _, row in table.iterrows():
        folder = next(pipeline["data"].glob(f"Task1/*/{row['case_id']}"))
        case = synthrad.load_case(folder)
        sct_file = out / "sct" / f"{row['case_id']}.mha"  # written in the data's own format
        sct = read_volume(sct_file)
        assert np.allclose(sct.affine, case.affine) and sct.array.dtype == np.int16
        expected = metrics.synthrad2025_metrics(case.ct, sct.array, case.mask)
        labels = [segmenter(v, case.mask, case.affine) for v in (case.ct, sct.array)]
        expected.update(metrics.overlap_metrics(*labels, spacing_of(case.affine), segmenter.names))
        for key in ("mae", "psnr", "ms_ssim", "dice", "hd95", "dice_bone", "hd95_bone"):
            assert row[key] == pytest.approx(expected[key], rel=1e-6, nan_ok=True), key
        assert 0 <= row["ms_ssim"] <= 1 and 0 <= row["dice"] <= 1 and row["hd95"] >= 0
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| case |"))
    assert "| MS-SSIM | Dice | HD95 (mm) |" in header and "| SSIM |" not in header
    assert "**edition**: SynthRAD2025 (from the layout)" in md
    assert "**Dice/HD95 segmentation**: HU thresholds inside the body mask: bone >= 250 HU" in md
    assert "TotalSegmentator" in md  # why it was not used: not installed here
    assert "masked 5-level MS-SSIM" in md and "[-1024, 3071] HU" in md
    assert "Beside the notebooks" not in md and "MS-SSIM" in md.split("## Figures")[1]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 2023 brain case and one 2025 HN case, each with a blurred-CT prediction."""
    root = tmp_path_factory.mktemp("mixed")
    write_layout(root / "data", per_region=1, regions=("HN",), shape=(40, 40, 10))
    brain = synthrad.CaseId(1, "brain", "A", 1)
    phantom.write_case(
        root / "data/Task1/brain/1BA001", phantom.make_case(brain, shape=(40, 40, 10))
    )
    pred = root / "pred"
    pred.mkdir()
    for case_id, suffix in (("1BA001", ".nii.gz"), ("1HNA001", ".mha")):
        case = synthrad.load_case(next((root / "data").glob(f"Task1/*/{case_id}")))
        sct = np.where(case.mask > 0, ndimage.gaussian_filter(case.ct, 1.0), -1000)
        write_volume(Volume(sct.astype(np.int16), case.affine), pred / f"{case_id}{suffix}")
    out = root / "report"
    argv = ["--data", str(root / "data"), "--predictions", str(pred), "--config", str(CONFIG)]
    argv += ["--set", "data.regions=[brain, HN]", "--segmentation", "thresholds"]
    assert evaluate_cli.main([*argv, "-o", str(out), "--device", "cpu"]) == 0
    return {"out": out}


def test_mixed_report_scores_each_case_by_its_own_release(mixed: dict) -> None:
    table = pd.read_csv(mixed["out"] / "per_patient.csv", dtype={"case_id": str})
    rows = table.set_index("case_id")
    assert np.isfinite(rows.loc["1BA001", "ssim"]) and np.isnan(rows.loc["1BA001", "ms_ssim"])
    assert np.isfinite(rows.loc["1HNA001", "ms_ssim"]) and np.isnan(rows.loc["1HNA001", "ssim"])
    assert np.isfinite(rows.loc["1HNA001", "hd95"]) and np.isnan(rows.loc["1BA001", "dice"])
    md = (mixed["out"] / "report.md").read_text()
    assert "**edition**: SynthRAD2023, SynthRAD2025 (from the layout)" in md
    header = next(line for line in md.splitlines() if line.startswith("| case |"))
    assert "| SSIM | MS-SSIM | Dice | HD95 (mm) |" in header
    line = next(ln for ln in md.splitlines() if ln.startswith("| 1BA001 |"))
    cells = [cell.strip() for cell in line.split("|")]
    assert cells.count("–") == 3  # no MS-SSIM, Dice, HD95 for a 2023 case


def test_demo_2025_plan_and_upload(tmp_path: Path) -> None:
    """What ``python -m hmss_ray.demo --edition 2025`` configures and sends (the run itself is
    the slow test in tests/integration/test_demo_2025.py)."""
    from hmss_ray import demo

    plan = demo.EDITIONS["2025"]
    cfg = load_config(CONFIG, [*plan.overrides, *demo.QUICK])
    assert cfg.data.regions == ("HN", "TH", "AB") and cfg.data.hu_range == (-1024.0, 3071.0)
    assert plan.phantom_args == ("--edition", "2025")
    write_layout(tmp_path / "data", per_region=1, regions=("TH",), shape=(32, 32, 8))
    case = tmp_path / "data" / "Task1" / "TH" / "1THA001"
    sent = demo.upload_file(case, tmp_path / "upload")
    assert sent.name == "1THA001.nii.gz"  # the endpoint takes NIfTI: converted, same grid
    original, converted = read_volume(case / "mr.mha"), read_volume(sent)
    assert np.array_equal(original.array, converted.array)
    assert np.allclose(original.affine, converted.affine, atol=1e-5)
    mask = demo.upload_file(case, tmp_path / "upload", "mask")  # sent beside it, as NIfTI too
    assert mask is not None and mask.name == "1THA001_mask.nii.gz"
    assert np.array_equal(read_volume(mask).array, read_volume(case / "mask.mha").array)
    brain = tmp_path / "Task1" / "brain" / "1BA001"
    phantom.write_case(
        brain, phantom.make_case(synthrad.CaseId(1, "brain", "A", 1), shape=(32, 32, 8))
    )
    assert demo.upload_file(brain, tmp_path / "upload") == brain / "mr.nii.gz"  # as it is
