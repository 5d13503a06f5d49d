"""Batch prediction on Ray Data gives the local path's sCTs, study for study, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hmss_ray.inference.batch import BatchOptions, find_studies, predict_batch
from hmss_ray.inference.ray_batch import pool_size, predict_batch_ray
from hmss_ray.inference.synthesizer import Synthesizer
from hmss_ray.io import read_volume
from tests.clinic_helpers import STUDIES, make_cohort, make_entry

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_session")]


def test_ray_data_batch_gives_the_local_sct_of_every_study(tmp_path: Path) -> None:
    entry, cohort = make_entry(tmp_path / "entry"), make_cohort(tmp_path / "cohort")
    studies = find_studies(cohort)
    options = BatchOptions(qa=False)
    local = predict_batch(
        Synthesizer.from_uri(entry, device="cpu"), studies, tmp_path / "a", options
    )
    remote, stats = predict_batch_ray(entry, studies, tmp_path / "b", options, device="cpu")
    assert [r.study for r in remote] == STUDIES
    assert [r.status for r in remote] == [r.status for r in local]
    assert stats["studies_per_min"] > 0 and stats["actors"] == 1
    for result in local:
        if result.status == "ok":
            a = read_volume(tmp_path / "a" / result.study / "sct.nii.gz")
            b = read_volume(tmp_path / "b" / result.study / "sct.nii.gz")
            np.testing.assert_array_equal(a.array, b.array)
            np.testing.assert_array_equal(a.affine, b.affine)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert [row["status"] for row in summary["studies"]].count("failed") == 1


@pytest.mark.parametrize(
    ("resources", "studies", "actors", "gpus"),
    [({"CPU": 2.0}, 6, 1, 0.0), ({"CPU": 16.0}, 6, 6, 0.0), ({"CPU": 16.0, "GPU": 4.0}, 6, 4, 1.0),
     ({"CPU": 16.0, "GPU": 4.0}, 2, 2, 1.0)],
)  # fmt: skip
def test_the_actor_pool_is_sized_to_the_gpus_or_cpus(resources, studies, actors, gpus) -> None:
    size = pool_size(resources, studies)
    assert (size.actors, size.num_gpus) == (actors, gpus)
