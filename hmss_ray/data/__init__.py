"""Data: SynthRAD2023 cases, phantoms, preprocessing and Parquet slice shards.

Submodules are imported explicitly (``from hmss_ray.data import shards``); nothing is imported
here so that ``import hmss_ray.data`` stays cheap and never pulls in Ray, torch or MONAI.
"""
