"""Tissue classes and what each looks like on CT (HU) and on each MR sequence.

CT values follow the clinical literature for unenhanced CT (fat -120..-80, CSF 0-15, grey matter
37-45, white matter 22-32, liver 50-70, lung about -850, cancellous bone 150-400, cortical bone
1000-1900, enamel/dentine above 1500). MR values are relative signals (0 = no signal, 1 = the
brightest tissue of the sequence): T1-weighted fat bright, white matter brighter than grey matter
brighter than CSF; T2-weighted CSF, urine and vitreous bright; cortical bone, teeth, air and lung
dark on every sequence, fatty marrow brighter than cortical bone.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class T(IntEnum):
    """Tissue label values (the ``labels`` volume of every phantom case)."""

    AIR = 0  # outside the body
    SOFT = 1  # skin, connective tissue, glands, mucosa, prostate, uterus, pancreas
    FAT = 2
    MUSCLE = 3
    CORTEX = 4  # cortical bone: skull tables, bone cortex
    MARROW = 5  # cancellous bone with marrow: vertebral bodies, pelvis, femur, mandible
    DIPLOE = 6  # cancellous layer between the skull tables, dense facial bone
    TEETH = 7
    CSF = 8
    GREY = 9
    WHITE = 10
    GAS = 11  # air inside the body: sinuses, mastoid, airway, bowel and rectal gas
    LUNG = 12
    BLADDER = 13  # urine
    EYE = 14  # vitreous
    LENS = 15
    BLOOD = 16  # heart and vessels (unenhanced)
    LIVER = 17
    KIDNEY = 18
    SPLEEN = 19
    BOWEL = 20  # bowel wall and content
    FLUID = 21  # bile, stomach fluid, other simple fluid
    CARTILAGE = 22  # intervertebral discs, costal and laryngeal cartilage, nasal septum
    CORD = 23  # spinal cord, optic nerve
    COUCH = 24  # the treatment couch: on CT only, outside the body mask


# per tissue: HU mean, per-patient spread (sd of the mean), texture amplitude (HU)
_CT = {
    T.AIR: (-1000, 0, 0),
    T.SOFT: (40, 5, 6),
    T.FAT: (-100, 5, 5),
    T.MUSCLE: (50, 3, 5),
    T.CORTEX: (1500, 80, 110),
    T.MARROW: (260, 40, 50),
    T.DIPLOE: (700, 60, 90),
    T.TEETH: (2300, 120, 120),
    T.CSF: (8, 1.5, 1.5),
    T.GREY: (40, 1.5, 1.5),
    T.WHITE: (27, 1.5, 1.5),
    T.GAS: (-990, 3, 3),
    T.LUNG: (-850, 12, 20),
    T.BLADDER: (9, 2, 1),
    T.EYE: (9, 2, 1),
    T.LENS: (95, 6, 3),
    T.BLOOD: (42, 3, 3),
    T.LIVER: (60, 4, 4),
    T.KIDNEY: (34, 3, 4),
    T.SPLEEN: (47, 3, 3),
    T.BOWEL: (28, 6, 12),
    T.FLUID: (10, 2, 2),
    T.CARTILAGE: (110, 12, 12),
    T.CORD: (33, 2, 2),
    T.COUCH: (-450, 0, 0),
}
# relative MR signal per sequence: T1 (spoiled gradient echo / MPRAGE-like), T1 after
# gadolinium (vessels, mucosa, kidneys, liver enhance), T2 (fast spin echo: fluid bright)
_MR = {  # t1, t1c, t2
    T.AIR: (0.0, 0.0, 0.0),
    T.SOFT: (0.45, 0.55, 0.40),
    T.FAT: (0.95, 0.92, 0.75),
    T.MUSCLE: (0.33, 0.37, 0.20),
    T.CORTEX: (0.03, 0.03, 0.02),
    T.MARROW: (0.70, 0.68, 0.55),
    T.DIPLOE: (0.40, 0.40, 0.32),
    T.TEETH: (0.02, 0.02, 0.01),
    T.CSF: (0.12, 0.14, 1.00),
    T.GREY: (0.48, 0.50, 0.62),
    T.WHITE: (0.74, 0.72, 0.42),
    T.GAS: (0.0, 0.0, 0.0),
    T.LUNG: (0.03, 0.04, 0.04),
    T.BLADDER: (0.10, 0.12, 0.97),
    T.EYE: (0.11, 0.13, 0.94),
    T.LENS: (0.55, 0.55, 0.25),
    T.BLOOD: (0.30, 0.80, 0.10),
    T.LIVER: (0.55, 0.66, 0.25),
    T.KIDNEY: (0.38, 0.72, 0.55),
    T.SPLEEN: (0.40, 0.60, 0.50),
    T.BOWEL: (0.35, 0.50, 0.45),
    T.FLUID: (0.12, 0.14, 0.95),
    T.CARTILAGE: (0.35, 0.36, 0.65),
    T.CORD: (0.62, 0.60, 0.45),
    T.COUCH: (0.0, 0.0, 0.0),
}
SEQUENCES = ("t1", "t1c", "t2")

CT_HU = np.array([_CT[t][0] for t in T], np.float32)
CT_SPREAD = np.array([_CT[t][1] for t in T], np.float32)
CT_TEXTURE = np.array([_CT[t][2] for t in T], np.float32)
MR_SIGNAL = {seq: np.array([_MR[t][i] for t in T], np.float32) for i, seq in enumerate(SEQUENCES)}
NOT_BODY = (T.AIR, T.COUCH)


def tissue_table() -> str:
    """CSV of every tissue: label, name, HU mean and spread, relative MR signal per sequence."""
    lines = ["label,name,hu_mean,hu_spread," + ",".join(SEQUENCES)]
    for t in T:
        mr = ",".join(f"{MR_SIGNAL[s][t]:.2f}" for s in SEQUENCES)
        lines.append(f"{int(t)},{t.name.lower()},{CT_HU[t]:g},{CT_SPREAD[t]:g},{mr}")
    return "\n".join(lines) + "\n"
