"""Deployment files for hmss-ray (cluster launcher, KubeRay, image) and the helpers that keep them
consistent: ``python -m infra.render`` and ``python -m infra.capacity``."""
