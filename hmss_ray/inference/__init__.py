"""Inference: a registry entry loaded once, whole MR volumes in, sCT volumes on their grid out."""
