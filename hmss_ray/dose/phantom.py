"""Targets and organs at risk of a phantom case, from its tissue labels.

Each region gets a target where that region's patients are treated: a brain lesion (in the brain
tissue), the prostate (below the bladder), a head-neck node (beside the airway), a lung lesion,
a liver lesion. The target is a sphere centred at the deepest point of the organ it belongs to;
organs at risk are whole tissue classes, less the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hmss_ray.config import UserError
from hmss_ray.data.phantom.tissues import T
from hmss_ray.dose.engine import Structures
from hmss_ray.dose.structures import deepest_point, sphere

# region -> (target organ tissues, target radius mm, {organ at risk: tissues})
PLANS: dict[str, tuple[tuple[T, ...], float, dict[str, tuple[T, ...]]]] = {
    "brain": ((T.GREY, T.WHITE), 15.0, {"eyes": (T.EYE, T.LENS), "cord": (T.CORD,)}),
    "pelvis": ((T.BLADDER,), 20.0, {"bladder": (T.BLADDER,), "bowel": (T.BOWEL,)}),
    "HN": ((T.GAS,), 12.0, {"cord": (T.CORD,), "mandible": (T.MARROW,)}),
    "TH": ((T.LUNG,), 15.0, {"lungs": (T.LUNG,), "heart": (T.BLOOD,), "cord": (T.CORD,)}),
    "AB": ((T.LIVER,), 20.0, {"liver": (T.LIVER,), "kidneys": (T.KIDNEY,), "cord": (T.CORD,)}),
}
PROSTATE_BELOW_BLADDER_MM = 25.0  # the prostate's centre sits this far below the bladder's
NODE_BESIDE_AIRWAY_MM = 30.0  # a level II-III node: lateral to the airway


def phantom_structures(
    labels: np.ndarray, body: np.ndarray, region: str, spacing: Sequence[float]
) -> Structures:
    """The region's target and organs at risk on the labels' grid (storage order kept)."""
    if region not in PLANS:
        raise UserError(f"no phantom plan for region {region!r}; known: {', '.join(PLANS)}")
    organ_tissues, radius, oar_tissues = PLANS[region]
    labels = np.asarray(labels)
    organ = np.isin(labels, [int(t) for t in organ_tissues]) & body
    centre = np.asarray(deepest_point(organ, spacing), dtype=float)
    if region == "pelvis":
        centre[2] -= PROSTATE_BELOW_BLADDER_MM / spacing[2]  # axis 2 is superior-inferior
    elif region == "HN":
        centre[0] += NODE_BESIDE_AIRWAY_MM / spacing[0]
    target = sphere(labels.shape, spacing, centre, radius) & body
    oars = {
        name: np.isin(labels, [int(t) for t in tissues]) & body & ~target
        for name, tissues in oar_tissues.items()
    }
    return Structures(body=body, target=target, oars={k: v for k, v in oars.items() if v.any()})
