"""``hmss_ray.evaluate``: report numbers equal hmss_ray.metrics, figures, skipped cases, the CLI.

Tiny phantom cases (about 40 x 40 x 16) in ``tmp_path``; the sCTs are written here (a blurred,
noisy CT) and scored through ``--predictions``, so no model is needed except in the one test that
synthesises with a tiny random generator. The CLI runs once as a subprocess (module fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage

from hmss_ray import metrics
from hmss_ray.config import load_config
from hmss_ray.data import preprocess, synthrad
from hmss_ray.data.phantom import write_dataset
from hmss_ray.evaluate import __main__ as evaluate_cli
from hmss_ray.evaluate import figures
from hmss_ray.evaluate import run as evaluate
from hmss_ray.metrics.features import Kind, describe, load_extractor

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "configs" / "demo.yaml"
SHAPE = (40, 40, 16)
NO_PRED = "1BB002"  # a paired case left without a prediction


def _write_predictions(data: Path, out: Path, ids: list[str]) -> None:
    """A plausible sCT per case: the CT blurred, with noise, air outside the mask, int16."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for case_id in ids:
        folder = next(data.glob(f"Task1/*/{case_id}"))
        ct_img = nib.load(folder / "ct.nii.gz")
        mask = np.asanyarray(nib.load(folder / "mask.nii.gz").dataobj) > 0
        sct = ndimage.gaussian_filter(ct_img.get_fdata(), 1.0) + rng.normal(0, 40, mask.shape)
        sct[~mask] = -1000
        nib.save(
            nib.Nifti1Image(np.rint(sct).astype(np.int16), ct_img.affine), out / f"{case_id}.nii.gz"
        )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    summary = write_dataset(root / "data", cases=4, regions=("brain",), corrupt=1, mr_only=1,
                            shape=SHAPE)  # fmt: skip
    # every paired case but one gets a prediction: the one without must be listed, not fatal
    _write_predictions(root / "data", root / "pred", [c for c in summary.paired if c != NO_PRED])
    return {"root": root, "data": root / "data", "pred": root / "pred", "summary": summary}


@pytest.fixture(scope="module")
def report(dataset: dict) -> dict:
    """The real CLI, once, as a user runs it: every paired case, sCTs from --predictions."""
    out = dataset["root"] / "report"
    env = {**os.environ, "HMSS_RANDOM_FEATURES_OK": "1"}
    args = ["--data", str(dataset["data"]), "--predictions", str(dataset["pred"])]
    args += ["--config", str(CONFIG), "-o", str(out), "--device", "cpu"]
    done = subprocess.run(
        [sys.executable, "-m", "hmss_ray.evaluate", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {out.resolve() / 'report.md'}" in done.stdout
    return {"out": out, "stdout": done.stdout, "md": (out / "report.md").read_text()}


def test_per_patient_numbers_equal_hmss_metrics(dataset: dict, report: dict) -> None:
    cfg = load_config(CONFIG)
    table = pd.read_csv(report["out"] / "per_patient.csv", dtype={"case_id": str})
    assert sorted(table["case_id"]) == sorted(set(dataset["summary"].paired) - {NO_PRED})
    vgg = load_extractor(Kind.VGG_DISTANCE, None)
    for _, row in table.iterrows():
        case = synthrad.load_case(next(dataset["data"].glob(f"Task1/*/{row['case_id']}")))
        sct = nib.load(dataset["pred"] / f"{row['case_id']}.nii.gz").get_fdata()
        expected = metrics.synthrad_metrics(case.ct, sct, case.mask)
        hu = [torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in (case.ct, sct, case.mask)]
        expected["bone_dice"] = metrics.bone_dice(*hu, threshold_hu=cfg.metrics.bone_threshold_hu)
        on_contract = (case.mask, case.affine, cfg.data, case.id.region)
        ref = preprocess.prepare_case(case.mr, case.ct, *on_contract)
        pred = preprocess.prepare_case(case.mr, sct, *on_contract)
        stack = [torch.from_numpy(np.moveaxis(v[:, :, ref.keep], 2, 0)[:, None].astype(np.float32))
                 for v in (ref.ct, pred.ct, ref.mask)]  # fmt: skip
        sm = metrics.SliceMetrics(cfg.data.hu_range, vgg=vgg)
        sm.update(*stack)
        slice_out = sm.compute()
        expected.update(slice_mse=slice_out["mse"], slice_ssim=slice_out["ssim"])
        expected["vgg"] = slice_out["perceptual"]
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (row["case_id"], key)
        # the Markdown row shows the same numbers, rounded
        line = next(
            ln for ln in report["md"].splitlines() if ln.startswith(f"| {row['case_id']} |")
        )
        assert (
            f"| {expected['mae']:.1f} | {expected['psnr']:.2f} | {expected['ssim']:.4f} |" in line
        )
    assert 0 < table["mae"].max() < 500  # untrained: ~1500 HU; a blurred CT: a few hundred


def test_summary_is_mean_and_std_per_centre(report: dict) -> None:
    table = pd.read_csv(report["out"] / "per_patient.csv")
    summary = pd.read_csv(report["out"] / "summary.csv").set_index("group")
    assert list(summary.index) == ["brain A", "brain C", "all"]
    centre_a = table[table["group"] == "brain A"]
    assert summary.loc["brain A", "patients"] == len(centre_a) == 2
    assert summary.loc["brain A", "mae_mean"] == pytest.approx(centre_a["mae"].mean())
    assert summary.loc["brain A", "mae_std"] == pytest.approx(centre_a["mae"].std())
    assert summary.loc["all", "ssim_mean"] == pytest.approx(table["ssim"].mean())
    assert np.isfinite(summary.loc["all", "fid"]) and summary.loc["all", "fid"] >= 0
    weighted = (table["slice_mse"] * table["slices"]).sum() / table["slices"].sum()
    assert summary.loc["all", "slice_mse_pooled"] == pytest.approx(weighted)


def test_report_names_extractors_and_compares_with_notebooks(report: dict) -> None:
    md = report["md"]
    fid_label = describe(load_extractor(Kind.INCEPTION, None), "FID")
    assert fid_label in md  # "FID (random features)" when no pretrained weights are cached
    assert describe(load_extractor(Kind.VGG_DISTANCE, None), "VGG distance") in md
    for reported in ("0.013473", "0.866290", "97.26", "1.324"):
        assert reported in md
    assert "slice level" in md and "held-out patients" in md


def test_bad_cases_are_listed_not_fatal(dataset: dict, report: dict) -> None:
    (corrupt_id,) = dataset["summary"].corrupt
    (mr_only_id,) = dataset["summary"].mr_only
    left_out = report["md"].split("## Cases left out")[1]
    assert f"| {corrupt_id} | ct.nii.gz: unreadable" in left_out
    assert f"| {mr_only_id} | MR only" in left_out
    assert f"| {NO_PRED} | no prediction " in left_out
    assert f"{corrupt_id}: skipped" in report["stdout"]


def test_figures_are_pngs_of_the_expected_size(report: dict) -> None:
    panels = sorted(report["out"].glob("panel_*.png"))
    assert len(panels) == 3  # lowest, median and highest MAE of the 3 patients
    for path in panels:
        height, width, _ = mpimg.imread(path).shape
        assert width == figures.PANEL_WIDTH * figures.DPI
        low, high = (h * figures.DPI for h in figures.PANEL_HEIGHT_RANGE)
        assert low <= height <= high
        assert f"]({path.name})" in report["md"]
    height, width, _ = mpimg.imread(report["out"] / "mae_by_centre.png").shape
    assert (width, height) == tuple(s * figures.DPI for s in figures.BOX_FIGSIZE)


def test_panel_figure_is_3_views_by_4_columns(dataset: dict, tmp_path: Path) -> None:
    case = synthrad.load_case(next(dataset["data"].glob("Task1/*/1BA001")))
    fig = figures.panel_figure(case.mr, case.ct, case.ct, case.mask, case.affine, "1BA001")
    image_axes = [ax for ax in fig.axes if ax.images]
    cells = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start)
             for ax in image_axes}  # fmt: skip
    assert len(image_axes) == 12 and cells == {(r, c) for r in range(3) for c in range(4)}
    assert [ax.get_title() for ax in image_axes[:4]] == list(figures.COLUMNS)
    assert [image_axes[i].get_ylabel() for i in (0, 4, 8)] == list(figures.VIEWS)
    assert len(fig.axes) == 14  # plus the HU and |sCT - CT| colour bars
    path = figures.save(fig, tmp_path / "panel.png")
    height, width, _ = mpimg.imread(path).shape
    assert (width, height) == tuple(round(s * figures.DPI) for s in fig.get_size_inches())
    diff_axes = image_axes[3::4]  # sCT == CT here: the difference column is all zero
    assert all(np.all(np.asarray(ax.images[0].get_array()) == 0) for ax in diff_axes)


def test_unreadable_or_misplaced_prediction_is_a_case_error(dataset: dict, tmp_path: Path) -> None:
    case = synthrad.load_case(next(dataset["data"].glob("Task1/*/1BA001")))
    garbage = tmp_path / "1BA001.nii.gz"
    garbage.write_bytes(b"not a NIfTI")
    with pytest.raises(ValueError, match="unreadable"):
        evaluate.read_prediction(garbage, case)
    shifted = case.affine.copy()
    shifted[0, 3] += 2.0
    nib.save(nib.Nifti1Image(case.ct, shifted), garbage)
    with pytest.raises(ValueError, match="affine differs"):
        evaluate.read_prediction(garbage, case)


def test_no_case_evaluated_exits_3(dataset: dict, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["--data", str(dataset["data"]), "--predictions", str(tmp_path / "empty")]
    assert evaluate_cli.main([*argv, "--config", str(CONFIG), "-o", str(tmp_path / "r")]) == 3


@pytest.fixture(scope="module")
def shards(dataset: dict) -> tuple[str, dict]:
    from hmss_ray.data.prepare import prepare_dataset

    uri = str(dataset["root"] / "shards")
    return uri, prepare_dataset(dataset["data"], uri, load_config(CONFIG)).manifest


def test_manifest_gives_the_split(dataset: dict, shards: tuple[str, dict]) -> None:
    uri, manifest = shards
    for split in ("train", "val", "test"):
        refs, skipped = evaluate.select_cases(str(dataset["data"]), split, uri, ("brain",))
        expected = manifest.case_ids(split)
        assert [str(r.id) for r in refs] == expected and expected and skipped == []


def test_synthesises_the_test_split_with_the_model(
    dataset: dict, shards: tuple[str, dict], tmp_path: Path
) -> None:
    """As the demo calls it, but without --predictions: the model makes the sCTs."""
    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator

    torch.manual_seed(0)
    cfg = load_config(CONFIG)
    directory = ckpt.save_checkpoint(tmp_path / "ckpt", generator=build_generator(cfg), cfg=cfg)
    entry = ckpt.write_registry_entry(directory, str(tmp_path / "reg"), "tiny",
                                      metrics={}, winner={"trial_id": "t0"})  # fmt: skip
    out = tmp_path / "report"
    argv = ["--model", entry, "--data", str(dataset["data"]), "--shards", shards[0]]
    assert evaluate_cli.main([*argv, "--split", "test", "-o", str(out), "--device", "cpu"]) == 0
    test_ids = shards[1].case_ids("test")
    assert sorted(pd.read_csv(out / "per_patient.csv")["case_id"]) == test_ids
    written = sorted(p.name for p in (out / "sct").glob("*.nii.gz"))
    assert written == [f"{c}.nii.gz" for c in test_ids]
    assert nib.load(out / "sct" / written[0]).get_data_dtype() == np.int16
    md = (out / "report.md").read_text()
    assert f"**model**: {entry}" in md and "panel_" in md
