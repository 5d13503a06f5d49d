"""hmss-ray: MRI -> synthetic CT with the HMSS cascade GAN, trained, searched and served on Ray.

The Python API (imported on first use, so ``import hmss_ray`` stays light)::

    from hmss_ray import Synthesizer, read_volume, write_volume

    synth = Synthesizer.from_uri("outputs/demo/registry/demo", device="cpu")
    sct = synth.predict(read_volume("mr.nii.gz"))  # a Volume: int16 HU on the MR's grid
    write_volume(sct, "sct.nii.gz")

The commands are ``hmss-ray <stage>`` (``hmss-ray --help`` lists them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hmss_ray.inference.synthesizer import InputError, Synthesizer
    from hmss_ray.io import UnreadableVolume, Volume, read_volume, write_volume

_LAZY = {
    "Synthesizer": "hmss_ray.inference.synthesizer",
    "InputError": "hmss_ray.inference.synthesizer",
    "Volume": "hmss_ray.io",
    "UnreadableVolume": "hmss_ray.io",
    "read_volume": "hmss_ray.io",
    "write_volume": "hmss_ray.io",
}
__all__ = [
    "InputError",
    "Synthesizer",
    "UnreadableVolume",
    "Volume",
    "__version__",
    "read_volume",
    "write_volume",
]


def __getattr__(name: str) -> Any:
    """Import the public names on first use: ``Synthesizer`` needs torch, ``Volume`` does not."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hmss_ray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
