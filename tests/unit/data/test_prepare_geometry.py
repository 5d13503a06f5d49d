"""prepare under the geometry contract: the storage order does not change the shards, a
real-size pelvis loses no body voxel, a body that cannot fit is reported, and evaluation's slice
metrics use exactly the slices the shards hold."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from hmss_ray.config import ExperimentConfig, load_config
from hmss_ray.data import shards
from hmss_ray.data.phantom import make_case, write_case, write_dataset
from hmss_ray.data.prepare import prepare_dataset
from hmss_ray.data.synthrad import CaseId, load_case
from hmss_ray.evaluate.run import Scorers, patient_metrics
from hmss_ray.metrics.features import Kind, load_extractor
from tests.geometry_cases import at_spacing, reorder

ROOT = Path(__file__).resolve().parents[3]
PERMUTED = ((2, 0, 1), (True, False, True))  # stored sagittally, two axes flipped


def _restore(root: Path, change) -> None:
    """Rewrite every case's mr/ct/mask through ``change(array, affine) -> (array, affine)``."""
    for path in sorted(root.glob("Task1/*/*/*.nii.gz")):
        image = nib.load(path)
        data, affine = change(np.asanyarray(image.dataobj), image.affine)
        out = nib.Nifti1Image(data, affine)
        out.header.set_qform(affine, code=1)
        out.header.set_sform(affine, code=1)
        nib.save(out, path)


def _rows(uri: str, split: str) -> dict[str, np.ndarray]:
    batches = list(shards.iter_batches(uri, split, batch_size=1024))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@pytest.fixture(scope="module")
def brains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same 6 brain phantoms as written, and stored in another axis order."""
    as_written = tmp_path_factory.mktemp("as_written")
    write_dataset(as_written, cases=6, regions=["brain"], shape=(32, 32, 12), seed=3)
    permuted = tmp_path_factory.mktemp("permuted")
    write_dataset(permuted, cases=6, regions=["brain"], shape=(32, 32, 12), seed=3)
    _restore(permuted, lambda data, affine: reorder(data, affine, *PERMUTED))
    return as_written, permuted


def _native_spacing(case_id: str, shape: tuple[int, int, int]) -> list[float]:
    """The voxel size the phantom renders ``case_id`` at when fitted into ``shape``."""
    affine = make_case(CaseId.parse(case_id), shape=shape).affine
    return [float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))]


def test_the_storage_order_does_not_change_a_single_shard(
    brains: tuple[Path, Path], small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    # the contract at the data's own spacing: reorientation alone, which must be exact
    native = _native_spacing("1BA001", (32, 32, 12))
    cfg = small_cfg.replace(
        {"data.regions": ["brain"], "data.context_slices": 1, "data.spacing.brain": native}
    )
    first = prepare_dataset(brains[0], str(tmp_path / "a"), cfg).manifest
    second = prepare_dataset(brains[1], str(tmp_path / "b"), cfg).manifest
    assert first is not None and second is not None
    assert [(s.path, s.sha256) for s in first.shards] == [(s.path, s.sha256) for s in second.shards]
    for case_id, entry in first.cases.items():
        other = second.cases[case_id]
        assert entry.slice_indices == other.slice_indices
        assert entry.grid["shape"] == other.grid["shape"]
        # NIfTI stores the affine in float32: the permuted file's origin is ~1e-6 mm apart
        np.testing.assert_allclose(entry.grid["affine"], other.grid["affine"], atol=1e-4)
        assert entry.source_grid["orientation"] == "LPS"
        assert other.source_grid["orientation"] == "ILA"  # the permuted storage, recorded


@pytest.fixture(scope="module")
def pelvis_cfg() -> ExperimentConfig:
    """configs/pelvis.yaml's data section (256 canvas, 2 x 2 x 2.5 mm), every body slice kept."""
    return load_config(ROOT / "configs/pelvis.yaml", ["data.min_mask_fraction=0.0"])


def _real_size_pelvis(root: Path, slices: int) -> Path:
    """One pelvis phantom of real size: the whole 540 x 380 mm field of view in-plane at
    1 x 1 x 2.5 mm (a body 375-480 mm wide), ``slices`` slices through the hips."""
    fov = ((-270, 270), (-190, 190), (-1.25 * slices, 1.25 * slices))
    case = make_case(CaseId.parse("1PA001"), seed=0, spacing=(1.0, 1.0, 2.5), fov=fov)
    write_case(root / "Task1" / "pelvis" / "1PA001", case)
    return root


def _no_body_voxel_lost(root: Path, cfg: ExperimentConfig, out: Path) -> None:
    manifest = prepare_dataset(root, str(out), cfg).manifest
    assert manifest is not None and manifest.skipped == []
    entry = manifest.cases["1PA001"]
    assert entry.body_voxels_lost == 0 and entry.body_fraction_lost == 0.0
    assert entry.grid["spacing"] == [2.0, 2.0, 2.5] and entry.crop_box["size"] == 256
    rows = _rows(str(out), entry.split)
    assert int(rows["mask"].sum()) == entry.body_voxels  # every body voxel is in a shard
    source = load_case(root / "Task1" / "pelvis" / "1PA001")
    source_mm3 = source.mask.sum() * 1.0 * 1.0 * 2.5
    assert entry.body_voxels * 2.0 * 2.0 * 2.5 == pytest.approx(source_mm3, rel=0.02)
    width_mm = np.ptp(np.flatnonzero(source.mask.any(axis=(1, 2)))) + 1
    assert width_mm > 400  # it is a real-size body: 1 mm voxels on a 256 canvas would cut it


def test_a_real_size_pelvis_loses_no_body_voxel(pelvis_cfg, tmp_path: Path) -> None:
    """480 x 320 in-plane, 12 slices (the full 100 slices: the slow test below)."""
    _no_body_voxel_lost(_real_size_pelvis(tmp_path / "data", 12), pelvis_cfg, tmp_path / "out")


@pytest.mark.slow
def test_a_real_size_pelvis_of_100_slices_loses_no_body_voxel(pelvis_cfg, tmp_path: Path) -> None:
    _no_body_voxel_lost(_real_size_pelvis(tmp_path / "data", 100), pelvis_cfg, tmp_path / "out")


def test_a_body_that_cannot_fit_is_skipped_naming_the_keys(pelvis_cfg, tmp_path: Path) -> None:
    """At 1 mm (the old pelvis.yaml) the 256 canvas is 256 mm: the hips would be cut off."""
    root = _real_size_pelvis(tmp_path / "data", 4)
    # a 200 x 200 mm window of another pelvis: its body (cut by the window) fits 256 mm
    window = ((-100, 100), (-100, 100), (-5, 5))
    small = make_case(CaseId.parse("1PC002"), seed=0, spacing=(1.0, 1.0, 2.5), fov=window)
    write_case(root / "Task1" / "pelvis" / "1PC002", small)
    at_1mm = pelvis_cfg.replace({"data.spacing.pelvis": [1.0, 1.0, 2.5]})
    manifest = prepare_dataset(root, str(tmp_path / "out"), at_1mm).manifest
    assert set(manifest.cases) == {"1PC002"}
    (skipped,) = manifest.skipped
    assert skipped.case_id == "1PA001" and skipped.split == "none"
    (reason,) = skipped.reasons
    assert reason.startswith("body does not fit the canvas: ")
    assert "256x256 px at 1x1 mm (256 x 256 mm) while the body spans" in reason
    for key in ("data.image_size", "data.spacing.pelvis", "data.max_body_loss"):
        assert key in reason
    allowed = at_1mm.replace({"data.max_body_loss": 0.5})
    entry = prepare_dataset(root, str(tmp_path / "allowed"), allowed).manifest.cases["1PA001"]
    assert 0.05 < entry.body_fraction_lost <= 0.5 and entry.body_voxels_lost > 0


def test_evaluation_scores_the_slices_the_shards_hold(
    brains: tuple[Path, Path], small_cfg: ExperimentConfig, tmp_path: Path
) -> None:
    """A case stored sagittally with 3:1 anisotropic voxels (2.7 x 2.7 x 9 mm: the shape of a
    0.9 x 0.9 x 3 mm scan at the test's coarse scale): its slice metrics come from the same
    contract-grid slices as its shard rows, its 3D metrics from its own CT grid."""
    cfg = small_cfg.replace({"data.regions": ["brain"], "data.min_mask_fraction": 0.0})
    root = tmp_path / "data"
    write_dataset(root, cases=3, regions=["brain"], shape=(32, 32, 24), seed=5)

    def resample(data, affine):
        order = 0 if data.dtype == np.uint8 else 1
        data, affine = at_spacing(data, affine, (2.7, 2.7, 9.0), order)
        data = data.astype(np.uint8) if order == 0 else data
        return reorder(data, affine, *PERMUTED)

    _restore(root, resample)
    manifest = prepare_dataset(root, str(tmp_path / "shards"), cfg).manifest
    case_id, entry = next((k, v) for k, v in sorted(manifest.cases.items()) if v.paired)
    assert entry.source_grid["spacing"] == pytest.approx([9.0, 2.7, 2.7])
    assert entry.grid["spacing"] == list(cfg.data.spacing["brain"])
    rows = _rows(str(tmp_path / "shards"), entry.split)
    mine = rows["case_id"] == case_id
    order = np.argsort(rows["slice_index"][mine])
    case = load_case(root / "Task1" / "brain" / case_id, cfg.data)
    device = torch.device("cpu")
    scorers = Scorers(
        load_extractor(Kind.VGG_DISTANCE, None), load_extractor(Kind.INCEPTION, None), device
    )
    row, ct_slices, _ = patient_metrics(case, case.ct, cfg, scorers)
    np.testing.assert_array_equal(ct_slices.numpy(), rows["ct"][mine][order])
    assert row["mae"] == 0 and row["slices"] == entry.slices  # on the case's own grid
