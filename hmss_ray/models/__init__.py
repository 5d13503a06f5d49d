"""Networks of the HMSS cascade GAN: generators, discriminator, and the factory that builds them."""

from hmss_ray.models.blocks import Norm
from hmss_ray.models.discriminators import MultiScalePatchDiscriminator, PatchDiscriminator
from hmss_ray.models.factory import build_discriminator, build_generator, count_parameters
from hmss_ray.models.generators import CascadeGenerator, HighResGenerator, LowResGenerator

__all__ = [
    "CascadeGenerator",
    "HighResGenerator",
    "LowResGenerator",
    "MultiScalePatchDiscriminator",
    "Norm",
    "PatchDiscriminator",
    "build_discriminator",
    "build_generator",
    "count_parameters",
]
