"""The dose check: a plan optimised on the CT, recomputed on the sCT, and what differs.

A research check with pyRadPlan (photon and proton pencil beams) and pymedphys (gamma), not a
commissioned clinical dose calculation. Needs the optional ``dose`` extra
(docs/decisions/dose-engine.md); without it every entry point says how to install it.
"""

from hmss_ray.dose.check import DoseCheck, check_case, parse_modalities
from hmss_ray.dose.engine import Modality, Structures

__all__ = ["DoseCheck", "Modality", "Structures", "check_case", "parse_modalities"]
