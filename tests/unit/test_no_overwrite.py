"""Commands never destroy what they did not create: ``phantom --out`` on real cases, ``train
--name`` of a run with other data or settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmss_ray import phantom
from hmss_ray.config import ExperimentConfig
from hmss_ray.train import identity


def test_phantom_refuses_a_folder_of_real_cases_and_rewrites_its_own(tmp_path, capsys):
    real = tmp_path / "synthrad" / "Task1" / "brain" / "1BA001"
    real.mkdir(parents=True)
    (real / "mr.nii.gz").write_bytes(b"a real patient")
    args = ["--cases", "1", "--regions", "brain", "--coarse", "--quiet", "-o"]
    assert phantom.main([*args, str(tmp_path / "synthrad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did not write (e.g. Task1/brain/1BA001)" in err[0]
    assert (real / "mr.nii.gz").read_bytes() == b"a real patient"
    out = tmp_path / "phantom"
    assert phantom.main([*args, str(out)]) == 0
    assert phantom.main([*args, str(out)]) == 0  # its own phantoms: written again
    extra = out / "Task1" / "brain" / "1BA999"
    extra.mkdir()
    assert phantom.main([*args, str(out)]) == 2  # a case someone added later is kept


def test_train_resumes_only_the_same_run(tmp_path: Path):
    run = str(tmp_path / "runs" / "r1")
    cfg = ExperimentConfig()
    ident = identity.identity(cfg, "hash-a")
    assert identity.check_or_record(run, ident, "r1") is False  # new: recorded
    same = identity.identity(cfg.replace({"serve.port": 9000}), "hash-a")
    assert identity.check_or_record(run, same, "r1") is True  # serving keys may change
    other = identity.identity(cfg.replace({"optim.lr_g": 1e-3}), "hash-b")
    with pytest.raises(identity.RunMismatch, match=r"hash-a -> hash-b; optim\.lr_g"):
        identity.check_or_record(run, other, "r1")
    foreign = tmp_path / "runs" / "r2"
    foreign.mkdir()
    (foreign / "something").write_text("x")
    with pytest.raises(identity.RunMismatch, match="not a run this command started"):
        identity.check_or_record(str(foreign), ident, "r2")


def test_a_checkpoint_save_on_a_full_disk_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    import tempfile

    import torch

    from hmss_ray.models import checkpoint as ckpt
    from hmss_ray.models.factory import build_generator
    from hmss_ray.train import upload
    from tests.small import TINY_MODEL

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cfg = ExperimentConfig().replace(TINY_MODEL)
    generator = build_generator(cfg)
    torch.manual_seed(0)

    def save(folder: Path) -> Path:  # its metadata lands on a device that is always full
        (folder / ckpt.META_FILE).symlink_to("/dev/full")
        return ckpt.save_checkpoint(folder, generator=generator, cfg=cfg)

    with pytest.raises(upload.CheckpointSaveError, match="disk full while saving the checkpoint"):
        upload.save_local(save, epoch=3)
    assert not list(tmp_path.glob("hmss-ckpt-*"))
    saved = upload.save_local(lambda f: ckpt.save_checkpoint(f, generator=generator, cfg=cfg), 4)
    assert (saved / ckpt.GENERATOR_FILE).stat().st_size > 0
