"""DDP for the staged cascade: each stage all-reduces only the parameters it trains.

The generator is wrapped per stage, after ``set_stage`` has frozen what the stage does not train:
DDP registers only parameters that require a gradient, so stage ``hrg`` reduces the HRG's
gradients and not the frozen LRG's (0.26 M of the brain generator's 45.8 M parameters). The
wrapper is rebuilt when the stage changes; the modules, their parameters and the optimisers stay
the same objects. ``find_unused_parameters`` is on only where a trainable parameter can miss a
gradient (see :func:`find_unused`): its extra graph traversal is not paid in the other stages.
The discriminator trains fully in every stage and is wrapped once.

No Ray here: the Ray loop and the torch.distributed tests (gloo, subprocesses) run this same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from hmss_ray.config import ExperimentConfig, GradCompression
from hmss_ray.train.steps import Stage, parse_stage, set_stage


def world_size() -> int:
    """Processes in the default group; 1 when torch.distributed is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def find_unused(cfg: ExperimentConfig, stage: str) -> bool:
    """Whether a trainable generator parameter can get no gradient in ``stage``.

    Only in ``joint`` with ``loss.lambda_low = 0``: the LRG's output head then feeds no loss (its
    features still feed the HRG). In ``lrg`` and ``hrg`` every trainable parameter is used.
    """
    return parse_stage(stage) is Stage.JOINT and not cfg.loss.lambda_low


@dataclass
class CommLog:
    """What DDP's communication hook was handed, for tests and the ``ddp_comm`` bench."""

    params: dict[int, int] = field(default_factory=dict)  # id(parameter) -> elements
    calls: int = 0  # buckets all-reduced

    @property
    def elements(self) -> int:
        """Parameters' elements whose gradients were all-reduced (each counted once)."""
        return sum(self.params.values())

    def clear(self) -> None:
        self.params.clear()
        self.calls = 0


@dataclass
class _HookState:
    compression: GradCompression
    log: CommLog | None


def _comm_hook(state: _HookState, bucket):
    # no annotations: DDP compares them with dist.GradBucket / Future objects, and this module's
    # postponed annotations are strings
    if state.log is not None:
        state.log.calls += 1
        for param in bucket.parameters():
            state.log.params[id(param)] = param.numel()
    if state.compression is GradCompression.BF16:
        return default_hooks.bf16_compress_hook(None, bucket)  # None: the default group
    return default_hooks.allreduce_hook(None, bucket)


def wrap(
    module: nn.Module,
    device: torch.device,
    find_unused_parameters: bool,
    compression: GradCompression,
    log: CommLog | None,
) -> DistributedDataParallel:
    """``module`` in DDP over its parameters that require a gradient now; a hook compresses
    the gradients (``compression``) and/or records what is all-reduced (``log``)."""
    on_gpu = device.type == "cuda"
    ddp = DistributedDataParallel(
        module,
        device_ids=[device] if on_gpu else None,
        output_device=device if on_gpu else None,
        find_unused_parameters=find_unused_parameters,
    )
    if compression is not GradCompression.NONE or log is not None:
        # without either, DDP's built-in C++ all-reduce runs: no Python call per bucket
        ddp.register_comm_hook(_HookState(compression, log), _comm_hook)
    return ddp


class StageParallel:
    """The generator and discriminator as the train steps see them, wrapped for the stage.

    ``g``/``d`` are DDP wrappers when more than one process trains, else the modules themselves.
    Call :meth:`set_stage` at every epoch; it freezes, unfreezes and re-wraps only on a change.

    Args:
        generator: the cascade, already on ``device`` (its optimiser built after the move).
        discriminator: likewise.
        cfg: the experiment (``loss.lambda_low`` and ``train.grad_compression`` matter here).
        device: where the modules live.
        g_log, d_log: optional records of what the communication hooks all-reduce.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        cfg: ExperimentConfig,
        device: torch.device,
        g_log: CommLog | None = None,
        d_log: CommLog | None = None,
    ) -> None:
        self.generator, self.discriminator = generator, discriminator
        self.cfg, self.device, self.g_log = cfg, torch.device(device), g_log
        self.distributed = world_size() > 1
        self.stage: str | None = None
        self.g: nn.Module = generator
        self.d: nn.Module = discriminator
        if self.distributed:
            compression = cfg.train.grad_compression
            self.d = wrap(discriminator, self.device, False, compression, d_log)

    def set_stage(self, stage: str) -> None:
        """Freeze what ``stage`` does not train and wrap the generator over what it does."""
        stage = parse_stage(stage).value
        if stage == self.stage:
            return
        set_stage(self.generator, stage)
        if self.distributed:
            self.g = self.generator  # drop the previous wrapper (and its reducer) first
            self.g = wrap(
                self.generator,
                self.device,
                find_unused(self.cfg, stage),
                self.cfg.train.grad_compression,
                self.g_log,
            )
        self.stage = stage

    def ddp_parameters(self) -> int:
        """Elements of the generator parameters the current wrapper all-reduces every step (0
        in a single process: nothing is wrapped)."""
        if not self.distributed:
            return 0
        return sum(p.numel() for p in self.generator.parameters() if p.requires_grad)

    def train(self) -> None:
        self.g.train()
        self.d.train()


def reduce_sum(vector: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The element-wise sum of ``vector`` over every process (itself when not distributed)."""
    if world_size() == 1:
        return vector
    # NCCL reduces device tensors only; gloo reduces CPU tensors
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    summed = vector.to(on)
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.cpu()
