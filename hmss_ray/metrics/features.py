"""Frozen feature extractors for the perceptual loss, the VGG distance and FID.

Pretrained ImageNet weights are never downloaded at run time. They are read, with
``weights_only=True``, from a configured file (``loss.vgg_weights``, ``metrics.vgg_weights``,
``metrics.inception_weights``) or from the torch hub cache (``torch.hub.get_dir()/checkpoints``:
``$TORCH_HOME/hub/checkpoints`` or ``~/.cache/torch/hub/checkpoints``; the container image bakes
them in there) under torchvision's file names. A GPU run (``train.use_gpu``) refuses to start
when one it needs is missing (:func:`check_pretrained`), unless ``train.allow_random_features``.
Otherwise, when none is found, a warning is logged once per kind (an info line when
``HMSS_RANDOM_FEATURES_OK=1``) and a small seeded random-weight conv net stands in; every
extractor carries ``pretrained`` and ``label`` so reports can say "FID (random features)". The
random net is deliberately small (3 stride-2 stages, 16-64 channels, native resolution) so CPU
tests stay fast; its numbers only compare runs that used it.
"""

from __future__ import annotations

import functools
import logging
import os
from enum import StrEnum
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from hmss_ray.config import ExperimentConfig, UserError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_SEED = 0


class Kind(StrEnum):
    """What an extractor is for; each has its torchvision file name and network."""

    PERCEPTUAL = "perceptual"  # VGG19 relu1_1..relu5_1, pix2pixHD perceptual loss
    VGG_DISTANCE = "vgg_distance"  # VGG16 up to relu3_3 at 224x224, the notebooks' "VGG loss"
    INCEPTION = "inception"  # InceptionV3 pool features (2048) for FID


WEIGHT_FILES = {
    Kind.PERCEPTUAL: "vgg19-dcbb9e9d.pth",
    Kind.VGG_DISTANCE: "vgg16-397923af.pth",
    Kind.INCEPTION: "inception_v3_google-0cc3c7bd.pth",
}
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# indices into torchvision's ``features`` after which a feature map is taken, and its weight
_TAPS = {
    Kind.PERCEPTUAL: ((1, 6, 11, 20, 29), (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)),
    Kind.VGG_DISTANCE: ((15,), (1.0,)),
}
_USES = {
    Kind.PERCEPTUAL: ("perceptual loss (VGG19)", "loss.vgg_weights"),
    Kind.VGG_DISTANCE: ("validation VGG distance (VGG16)", "metrics.vgg_weights"),
    Kind.INCEPTION: ("FID (InceptionV3)", "metrics.inception_weights"),
}
_warned: set[Kind] = set()


class MissingWeightsError(UserError):
    """A GPU run needs pretrained feature weights that this machine does not have."""


def find_weights(kind: Kind, configured: str | None = None) -> Path | None:
    """The weight file to use: the configured one (it must exist), else the hub cache, else None."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"configured {kind} weights {configured} do not exist")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHT_FILES[Kind(kind)]
    return cached if cached.is_file() else None


def needed_weights(cfg: ExperimentConfig) -> dict[Kind, str | None]:
    """The extractors a training run uses, with their configured files: validation always
    computes the VGG distance and FID; the perceptual loss only when ``loss.lambda_perc`` > 0."""
    kinds: dict[Kind, str | None] = {}
    if cfg.loss.lambda_perc:
        kinds[Kind.PERCEPTUAL] = cfg.loss.vgg_weights
    kinds[Kind.VGG_DISTANCE] = cfg.metrics.vgg_weights
    kinds[Kind.INCEPTION] = cfg.metrics.inception_weights
    return kinds


def missing_weights(cfg: ExperimentConfig) -> list[Kind]:
    """The kinds of :func:`needed_weights` with no weight file on this machine."""
    missing = []
    for kind, configured in needed_weights(cfg).items():
        try:
            found = find_weights(kind, configured)
        except FileNotFoundError:
            found = None
        if found is None:
            missing.append(kind)
    return missing


def check_pretrained(cfg: ExperimentConfig) -> list[Kind]:
    """Refuse a GPU run whose perceptual loss, VGG distance or FID would use random features.

    Returns the missing kinds (empty when all are there). Raises :class:`MissingWeightsError`
    when any is missing, ``train.use_gpu`` is set and ``train.allow_random_features`` is not: on
    a cluster the search objective would otherwise be computed on random features, silently.
    """
    missing = missing_weights(cfg)
    if not missing or not cfg.train.use_gpu or cfg.train.allow_random_features:
        return missing
    what = "; ".join(
        f"{_USES[k][0]}: {_USES[k][1]}={needed_weights(cfg)[k] or 'null'}, or "
        f"{WEIGHT_FILES[k]} in the hub cache"
        for k in missing
    )
    raise MissingWeightsError(
        f"train.use_gpu is set but pretrained weights are missing on this machine ({what}). "
        f"The hub cache is {torch.hub.get_dir()}/checkpoints (set TORCH_HOME to move it); the "
        "image built from infra/docker/Dockerfile has all three. To train with seeded random "
        "features anyway, pass --allow-random-features (train.allow_random_features=true)"
    )


def _warn_random(kind: Kind) -> None:
    if kind in _warned:
        return
    _warned.add(kind)
    quiet = os.environ.get("HMSS_RANDOM_FEATURES_OK") == "1"
    (log.info if quiet else log.warning)(
        "no pretrained weights for %s (%s not in %s/checkpoints and none configured): using a "
        "seeded random-feature extractor; %s values only compare runs with the same fallback",
        kind, WEIGHT_FILES[kind], torch.hub.get_dir(), kind,
    )  # fmt: skip


def _unit_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [-1, 1] -> (B, 3, H, W) ImageNet-normalised, as the weights expect."""
    x = ((x + 1) / 2).clamp(0, 1).repeat(1, 3, 1, 1)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class VGGFeatures(nn.Module):
    """Pretrained VGG feature maps at fixed ReLU taps, for 1-channel images in [-1, 1]."""

    pretrained = True

    def __init__(self, kind: Kind, state: dict[str, torch.Tensor], size: int | None) -> None:
        super().__init__()
        taps, self.weights = _TAPS[kind]
        layout = _VGG19 if kind is Kind.PERCEPTUAL else _VGG16
        layers: list[nn.Module] = []
        channels = 3
        for item in layout:
            if len(layers) > taps[-1]:
                break
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers[: taps[-1] + 1])
        wanted = {k for k in self.features.state_dict()}
        found = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        missing = wanted - set(found)
        if missing:
            raise ValueError(f"{kind} weights lack {sorted(missing)[:3]}: not a torchvision VGG")
        self.features.load_state_dict({k: found[k] for k in wanted})
        self.taps, self.size = taps, size
        self.label = "VGG19 (ImageNet)" if kind is Kind.PERCEPTUAL else "VGG16 (ImageNet)"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = _unit_rgb(x)
        if self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x)
        return out


class InceptionFeatures(nn.Module):
    """InceptionV3 (torchvision layout) 2048-d pool features of 1-channel images in [-1, 1]."""

    pretrained = True
    label = "InceptionV3 (ImageNet)"
    num_features = 2048

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        # transform_input=True: the Google weights expect their own input scaling, and torchvision
        # converts ImageNet-normalised input to it
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        net.load_state_dict(state)
        net.fc = nn.Identity()
        net.aux_logits, net.AuxLogits = False, None
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(_unit_rgb(x), size=(299, 299), mode="bilinear", align_corners=False)
        return self.net(x)  # (B, 2048)


class RandomFeatures(nn.Module):
    """Seeded random conv net: 3 stride-2 stages (16, 32, 64 channels) at native resolution."""

    pretrained = False
    label = "random features"
    num_features = 16 + 32 + 64

    def __init__(self, seed: int = RANDOM_SEED, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        stages, c_in = [], 1
        for c_out in channels:
            conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
            with torch.no_grad():  # He init keeps activations at a similar scale per stage
                conv.weight.normal_(0.0, (2.0 / (c_in * 9)) ** 0.5, generator=generator)
                # random biases too: with zero biases a blank image would reach only dead ReLUs
                conv.bias.normal_(0.0, 0.1, generator=generator)
            stages.append(nn.Sequential(conv, nn.ReLU()))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.weights = tuple(1.0 for _ in channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, num_features): global means of every stage, the FID features."""
        return torch.cat([f.mean(dim=(2, 3)) for f in self(x)], dim=1)


def _frozen(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False)


@functools.lru_cache(maxsize=8)
def load_extractor(kind: Kind | str, configured: str | None = None) -> nn.Module:
    """A frozen CPU extractor for ``kind`` (cached: move it with ``.to(device)``).

    VGG kinds return a list of feature maps with ``.weights`` per map; the inception kind returns
    (B, F) features (``RandomFeatures`` via ``pooled``: see :func:`fid_features`).
    """
    kind = Kind(kind)
    path = find_weights(kind, configured)
    if path is None:
        _warn_random(kind)
        return _frozen(RandomFeatures())
    state = torch.load(path, map_location="cpu", weights_only=True)
    if kind is Kind.INCEPTION:
        return _frozen(InceptionFeatures(state))
    size = 224 if kind is Kind.VGG_DISTANCE else None
    return _frozen(VGGFeatures(kind, state, size))


def fid_features(extractor: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) in [-1, 1] -> (B, F) float64 features for the Fréchet distance."""
    feats = extractor.pooled(x) if isinstance(extractor, RandomFeatures) else extractor(x)
    return feats.double()


def describe(extractor: nn.Module, metric: str) -> str:
    """Name for reports: ``"FID"`` or ``"FID (random features)"``."""
    return metric if extractor.pretrained else f"{metric} (random features)"
