"""Per-stage DDP and sharded validation with two real processes (torch.distributed, gloo).

One spawn of two CPU processes runs the code the Ray loop runs (``steps.build_training``,
``StageParallel``, ``validate`` with an all-reduce) through all three stages, in three variants:
fp32 gradients, bf16-compressed gradients, and ``loss.lambda_low = 0`` (where the joint stage
needs ``find_unused_parameters``). Each rank trains on its own batches; the parent compares what
the ranks saved. No Ray: a Ray Train run costs ~20 s of start-up on two cores.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hmss_ray.config import ExperimentConfig
from hmss_ray.train import steps
from hmss_ray.train.distributed import CommLog, StageParallel, find_unused, reduce_sum
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
    "metrics.fid_max_slices": 7,  # the split's first 7 of 10 slices: 5 on rank 0, 2 on rank 1
    "train.stage_epochs": [1, 1, 1],
}
VARIANTS = {
    "fp32": {},
    "bf16": {"train.grad_compression": "bf16"},
    "no_low_loss": {"loss.lambda_low": 0.0},
}
STAGES = ("lrg", "hrg", "joint")
STEPS_PER_STAGE = 2


def tiny_cfg(**overrides) -> ExperimentConfig:
    return ExperimentConfig().replace({**TINY, **overrides})


def make_batch(seed: int, n: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mr = torch.rand(n, 1, 32, 32, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, 32, 32)
    mask[..., 4:28, 4:28] = 1
    return {"mr": mr, "ct": (mr * 0.5).tanh(), "mask": mask}


VAL = [make_batch(1000 + i) for i in range(5)]  # 10 slices in split order


def _train_variant(rank: int, cfg: ExperimentConfig) -> dict:
    torch.manual_seed(100 + rank)  # different initial weights: DDP's first wrap must sync them
    nets = steps.build_training(cfg, "cpu")
    g_log, d_log = CommLog(), CommLog()
    parallel = StageParallel(
        nets.generator, nets.discriminator, cfg, torch.device("cpu"), g_log, d_log
    )
    names = {id(p): n for n, p in nets.generator.named_parameters()}
    opt_g, opt_d = nets.optimizers["g"], nets.optimizers["d"]
    out: dict = {}
    step = 0
    for stage in STAGES:
        parallel.set_stage(stage)
        parallel.train()
        g_log.clear(), d_log.clear()
        for _ in range(STEPS_PER_STAGE):
            batch = make_batch(seed=10 * step + rank)  # every rank its own data
            steps.train_step(parallel.g, parallel.d, opt_g, opt_d, batch, cfg, stage, step)
            step += 1
        trainable = {n: p.numel() for n, p in nets.generator.named_parameters() if p.requires_grad}
        out[stage] = {
            "reduced": sorted(names[i] for i in g_log.params),
            "reduced_elements": g_log.elements,
            "trainable": sorted(trainable),
            "trainable_elements": sum(trainable.values()),
            "ddp_parameters": parallel.ddp_parameters(),
            "d_reduced_elements": d_log.elements,
            "d_elements": sum(p.numel() for p in nets.discriminator.parameters()),
            "g": {k: v.clone() for k, v in nets.generator.state_dict().items()},
            "d": {k: v.clone() for k, v in nets.discriminator.state_dict().items()},
        }
    share = VAL[:2] if rank == 0 else VAL[2:]  # slices 0-3 and 4-9
    start = 0 if rank == 0 else 4
    reduce = lambda v: reduce_sum(v, torch.device("cpu"))  # noqa: E731
    out["validation"] = validate(parallel.g, share, cfg, start=start, reduce=reduce)
    return out


def _rank_main(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        results = {name: _train_variant(rank, tiny_cfg(**v)) for name, v in VARIANTS.items()}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(str(out / f"store-{time.time_ns()}"), str(out)), nprocs=2)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_both_ranks_hold_identical_weights_after_every_stage(two_ranks, variant):
    first, second = two_ranks[0][variant], two_ranks[1][variant]
    for stage in STAGES:
        for net in ("g", "d"):
            a, b = first[stage][net], second[stage][net]
            assert all(torch.equal(a[k], b[k]) for k in a), f"{variant} {stage}: {net} differs"
    lrg, hrg, joint = (first[s]["g"] for s in STAGES)
    # and they trained: only the HRG in hrg, both in joint
    assert torch.equal(lrg["low.stem.1.weight"], hrg["low.stem.1.weight"])
    assert not torch.equal(lrg["high.head.1.weight"], hrg["high.head.1.weight"])
    assert not torch.equal(hrg["low.stem.1.weight"], joint["low.stem.1.weight"])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_exactly_the_trainable_parameters_are_all_reduced(two_ranks, variant):
    for rank in two_ranks:
        record = rank[variant]
        for stage in STAGES:
            seen = record[stage]
            assert seen["reduced"] == seen["trainable"], f"{variant} {stage}"
            assert seen["reduced_elements"] == seen["trainable_elements"] == seen["ddp_parameters"]
        lrg, hrg, joint = (record[s]["reduced"] for s in STAGES)
        assert lrg and all(n.startswith("low.") for n in lrg)
        assert hrg and all(n.startswith("high.") for n in hrg)
        assert set(joint) == set(lrg) | set(hrg)
        # the discriminator trains whole in every stage
        assert all(record[s]["d_reduced_elements"] == record[s]["d_elements"] for s in STAGES)


def test_sharded_validation_equals_one_process_scoring_the_split(two_ranks):
    cfg = tiny_cfg()
    generator = steps.build_training(cfg, "cpu").generator
    generator.load_state_dict(two_ranks[0]["fp32"]["joint"]["g"])
    alone = validate(generator, VAL, cfg)
    sharded = [rank["fp32"]["validation"] for rank in two_ranks]
    assert sharded[0] == sharded[1]  # every rank ends with the whole split's metrics
    for key, value in alone.items():
        assert sharded[0][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert math.isfinite(alone["kid"]) and alone["kid_slices"] == 7


@pytest.mark.parametrize(
    ("stage", "lambda_low", "expected"),
    [("lrg", 5.0, False), ("hrg", 5.0, False), ("joint", 5.0, False), ("joint", 0.0, True),
     ("hrg", 0.0, False)],
)  # fmt: skip
def test_find_unused_parameters_only_where_a_parameter_can_miss_its_gradient(
    stage, lambda_low, expected
):
    assert find_unused(tiny_cfg(**{"loss.lambda_low": lambda_low}), stage) is expected
