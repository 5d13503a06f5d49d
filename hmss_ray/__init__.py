"""hmss-ray: MRI -> synthetic CT with the HMSS cascade GAN on Ray."""

__version__ = "0.1.0"
