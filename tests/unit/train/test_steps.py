"""The staged schedule, the pure D/G steps (plain and DDP-wrapped), validation, and the order
in which networks, optimisers and a restored state meet their device."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hmss_ray.config import ExperimentConfig
from hmss_ray.models import build_discriminator, build_generator
from hmss_ray.models import checkpoint as ckpt
from hmss_ray.train import steps
from hmss_ray.train.validation import validate

TINY = {
    "data.image_size": 32,
    "model.lrg_channels": 8,
    "model.lrg_downsamples": 2,
    "model.lrg_res_blocks": 1,
    "model.hrg_channels": 4,
    "model.hrg_res_blocks": 1,
    "model.disc_channels": 4,
    "model.disc_layers": 2,
    "metrics.fid_max_slices": 8,
}

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(**overrides) -> ExperimentConfig:
    return ExperimentConfig().replace({**TINY, **overrides})


def make_batch(n: int = 2, channels: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mr = torch.rand(n, channels, 32, 32, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, 32, 32)
    mask[..., 4:28, 4:28] = 1
    return {"mr": mr, "ct": (mr[:, channels // 2 :][:, :1] * 0.5).tanh(), "mask": mask}


def networks(cfg):
    torch.manual_seed(0)
    g, d = build_generator(cfg), build_discriminator(cfg)
    return g, d, torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)


def snapshot(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before) -> bool:
    return any(not torch.equal(p, b) for p, b in zip(module.parameters(), before, strict=True))


@pytest.mark.parametrize(
    ("epoch", "stage"),
    [(0, "lrg"), (1, "lrg"), (2, "hrg"), (3, "hrg"), (4, "joint"), (9, "joint"), (50, "joint")],
)
def test_stage_for_epoch(epoch, stage):
    assert steps.stage_for_epoch(epoch, (2, 2, 6)) == stage


def test_empty_stages_are_skipped():
    assert steps.stage_for_epoch(0, (0, 1, 1)) == "hrg"
    assert steps.stage_for_epoch(0, (0, 0, 3)) == "joint"
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        steps.stage_for_epoch(-1, (1, 1, 1))


@pytest.mark.parametrize(
    ("stage", "low_trains", "high_trains"),
    [("lrg", True, False), ("hrg", False, True), ("joint", True, True)],
)
def test_set_stage_freezes_what_the_stage_does_not_train(stage, low_trains, high_trains):
    cfg = tiny_cfg()
    g, d, opt_g, _ = networks(cfg)
    steps.set_stage(g, stage)
    assert all(p.requires_grad == low_trains for p in g.low.parameters())
    assert all(p.requires_grad == high_trains for p in g.high.parameters())
    low, high = snapshot(g.low), snapshot(g.high)
    losses = steps.g_step(g, d, opt_g, make_batch(), cfg, stage)
    assert changed(g.low, low) == low_trains and changed(g.high, high) == high_trains
    assert losses["g_total"] > 0 and all(math.isfinite(v) for v in losses.values())
    assert ("g_low_l1" in losses) == (stage == "joint")


def test_unknown_stage_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'lrg', 'hrg', 'joint'"):
        steps.set_stage(build_generator(tiny_cfg()), "warmup")


def test_d_step_updates_only_the_discriminator_and_names_its_terms():
    cfg = tiny_cfg(**{"loss.lambda_gp": 1.0})
    g, d, _, opt_d = networks(cfg)
    g_before, d_before = snapshot(g), snapshot(d)
    losses = steps.d_step(g, d, opt_d, make_batch(), cfg, "joint")
    assert set(losses) == {"d_total", "d_real", "d_fake", "d_gp"}
    assert changed(d, d_before) and not changed(g, g_before)


def test_train_step_updates_d_every_g_steps_per_d():
    cfg = tiny_cfg(**{"optim.g_steps_per_d": 3})
    g, d, opt_g, opt_d = networks(cfg)
    stepped = []
    for index in range(6):
        before = snapshot(d)
        losses = steps.train_step(g, d, opt_g, opt_d, make_batch(), cfg, "lrg", index)
        stepped.append("d_total" in losses)
        assert changed(d, before) == stepped[-1]
    assert stepped == [True, False, False, True, False, False]


@pytest.mark.parametrize("criterion", ["lsgan", "hinge", "bce"])
def test_every_criterion_trains_with_numpy_batches_and_context(criterion):
    cfg = tiny_cfg(**{"loss.adversarial": criterion, "data.context_slices": 1})
    g, d, opt_g, opt_d = networks(cfg)
    batch = {k: v.numpy() for k, v in make_batch(channels=3).items()}
    batch["case_id"] = np.array(["1BA001", "1BA001"])  # metadata rides along and is ignored
    losses = steps.train_step(g, d, opt_g, opt_d, batch, cfg, "joint", 0)
    assert {"g_adv", "g_fm", "g_l1", "g_perc", "g_ssim", "d_total"} <= set(losses)


@pytest.mark.parametrize(
    ("mode", "device", "dtype"),
    [("auto", "cuda", torch.bfloat16), ("bf16", "cuda:1", torch.bfloat16), ("off", "cuda", None),
     ("auto", "cpu", None), ("bf16", "cpu", None)],
)  # fmt: skip
def test_mixed_precision_is_bf16_on_cuda_only(mode, device, dtype):
    # the CUDA bf16 step itself is tests/gpu/test_cuda.py (marked gpu): training on a CPU never
    # autocasts, so no CPU test pretends to cover it
    assert steps.autocast_dtype(mode, device) is dtype


def test_steps_work_on_per_stage_ddp_wrappers(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        cfg = tiny_cfg(**{"loss.lambda_gp": 1.0})
        g, d, opt_g, opt_d = networks(cfg)
        d = DistributedDataParallel(d)  # D trains in every stage: wrapped once
        for index, stage in enumerate(["lrg", "hrg", "joint", "joint"]):
            steps.set_stage(g, stage)
            # wrapped after the freeze: DDP then registers only what the stage trains, and
            # every registered parameter gets a gradient (find_unused_parameters off)
            wrapped = DistributedDataParallel(g)
            losses = steps.train_step(wrapped, d, opt_g, opt_d, make_batch(), cfg, stage, index)
            assert math.isfinite(losses["g_total"]) and math.isfinite(losses["d_total"])
        assert all(p.requires_grad for p in g.parameters())  # joint trains all
        assert math.isfinite(validate(wrapped, [make_batch()], cfg)["mae_hu"])
    finally:
        dist.destroy_process_group()


def _trained_checkpoint(cfg, directory):
    g, d, opt_g, opt_d = networks(cfg)
    for index in range(2):
        steps.train_step(g, d, opt_g, opt_d, make_batch(seed=index), cfg, "joint", index)
    optimizers = {"g": opt_g, "d": opt_d}
    return ckpt.save_checkpoint(
        directory, generator=g, discriminator=d, optimizers=optimizers, cfg=cfg, epoch=4, step=2
    )


def test_a_module_moved_after_the_restore_cannot_step(tmp_path):
    # the order train/loop.py used to have (prepare_model moved the modules to cuda:N after the
    # restore); float64 stands in for the device on a CPU: the same mismatch, the same failure
    cfg = tiny_cfg()
    directory = _trained_checkpoint(cfg, tmp_path / "ckpt")
    g, d, opt_g, opt_d = networks(cfg)
    ckpt.load_training_state(directory, g, d, {"g": opt_g, "d": opt_d})
    g.to(torch.float64), d.to(torch.float64)
    batch = {k: v.double() for k, v in make_batch().items()}
    with pytest.raises(RuntimeError, match="dtype"):
        steps.g_step(g, d, opt_g, batch, cfg, "joint")


def test_build_training_moves_before_it_restores(tmp_path):
    cfg = tiny_cfg()
    directory = _trained_checkpoint(cfg, tmp_path / "ckpt")
    nets = steps.build_training(cfg, "cpu", dtype=torch.float64, resume=directory)
    assert (nets.start_epoch, nets.step) == (5, 2)
    restored = [s for opt in nets.optimizers.values() for s in opt.state.values()]
    assert restored and all(s["exp_avg"].dtype == torch.float64 for s in restored)
    g, d = nets.generator, nets.discriminator
    saved = ckpt.load_generator(directory)[0].state_dict()
    assert all(torch.equal(v.double(), g.state_dict()[k].double()) for k, v in saved.items())
    batch = {k: v.double() for k, v in make_batch().items()}
    before = snapshot(g)
    opt_g, opt_d = nets.optimizers["g"], nets.optimizers["d"]
    losses = steps.train_step(g, d, opt_g, opt_d, batch, cfg, "joint", 2)
    assert math.isfinite(losses["g_total"]) and changed(g, before)


def test_warm_start_takes_weights_and_fresh_optimisers(tmp_path):
    cfg = tiny_cfg()
    directory = _trained_checkpoint(cfg, tmp_path / "ckpt")
    nets = steps.build_training(cfg, "cpu", warm_start=directory)
    assert (nets.start_epoch, nets.step) == (0, 0)
    assert all(not opt.state for opt in nets.optimizers.values())
    saved = ckpt.load_generator(directory)[0].state_dict()
    assert all(torch.equal(v, nets.generator.state_dict()[k]) for k, v in saved.items())


def test_validate_reports_every_metric_deterministically():
    cfg = tiny_cfg()
    g, *_ = networks(cfg)
    g.train()
    batches = [make_batch(2, seed=1), make_batch(2, seed=2)]
    first = validate(g, batches, cfg)
    assert g.training  # the caller's mode is restored
    expected = {"low_mae_hu", "low_mse", "low_ssim", "low_psnr", "mae_hu", "mse", "ssim", "psnr"}
    expected |= {"perceptual", "kid", "kid_std", "bone_dice", "score", "patients"}
    assert expected <= set(first)
    assert first["fid_random_features"] == 1.0  # no weights on a test machine
    assert all(math.isfinite(first[k]) for k in expected)
    assert validate(copy.deepcopy(g), batches, cfg) == first
    t = cfg.tune
    score = t.w_mae * first["mae_hu"] / t.mae_ref + t.w_ssim * (1 - first["ssim"])
    score += t.w_kid * first["kid"] / t.kid_ref
    assert first["score"] == pytest.approx(score)
