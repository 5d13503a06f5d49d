"""A 32 px setup shared by the tests that prepare phantoms: whole patients rendered into about
32 x 32 x 12 voxels (brain about 8 mm, pelvis about 17 mm), with a geometry contract as coarse so
the body fits the 32 px canvas (no body voxels lost)."""

from __future__ import annotations

SMALL_SHAPE = (32, 32, 12)
SMALL_SPACING = {
    "data.spacing.brain": [8.0, 8.0, 16.0],
    "data.spacing.pelvis": [17.0, 17.0, 20.0],
    "data.spacing.HN": [8.0, 8.0, 24.0],
    "data.spacing.TH": [17.0, 17.0, 30.0],
    "data.spacing.AB": [17.0, 17.0, 27.0],
}
# lrg_downsamples=1 makes 32 a valid image_size
SMALL = {
    "data.image_size": 32,
    "model.lrg_downsamples": 1,
    "data.slices_per_shard": 40,
    **SMALL_SPACING,
}

# the tiny untrained cascade the inference tests load (32 px, one downsampling)
TINY_MODEL = {
    "data.regions": ["brain"],
    "data.image_size": 32,
    "data.context_slices": 1,
    "model.lrg_channels": 8,
    "model.lrg_downsamples": 1,
    "model.lrg_res_blocks": 1,
    "model.hrg_channels": 4,
    "model.hrg_res_blocks": 1,
}
