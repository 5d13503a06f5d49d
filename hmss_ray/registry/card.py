"""The model card (``MODEL_CARD.md``) written into every version and shown by ``GET /v1/model``.

It says what the model was trained on (data, centres, regions), the geometry contract and HU range
it works in, its validation metrics with their definitions, whether the perceptual features were
pretrained, and what it is for: research, not a medical device.
"""

from __future__ import annotations

from typing import Any

DEFINITIONS = {
    "mae_hu": "mean absolute error in HU inside the body mask, per patient, averaged",
    "psnr": "peak signal-to-noise ratio (dB) over the HU range inside the body",
    "ssim": "structural similarity over the HU range inside the body",
    "fid": "Frechet distance between feature distributions of sCT and CT slices",
    "score": "the search objective (lower is better): w_ssim * (1 - SSIM) + w_fid * FID / fid_ref",
}

LIMITS = (
    "Research use only. This model is not a medical device and is not cleared for clinical use; "
    "every synthetic CT must be reviewed by a qualified person before any use in treatment "
    "planning. It was validated only on the data and regions listed here; MR from other "
    "scanners, sequences, field strengths or anatomy may give wrong HU without any warning."
)


def model_card(
    name: str, config: dict[str, Any], metrics: dict[str, Any], facts: dict[str, Any]
) -> str:
    """Markdown for one version.

    Args:
        name: the registry entry.
        config: the model's config as a plain dict (``ExperimentConfig.to_dict()``).
        metrics: its validation metrics.
        facts: what only the writer knows: ``data`` (URI), ``data_manifest_hash``, ``centres``
            (``{split: {region: {centre: {"cases": n}}}}``), ``pretrained_features`` (bool),
            ``trial_id``, ``search``.
    """
    data = config.get("data", {})
    lines = [f"# Model card: {name}", "", "## Intended use and limits", "", LIMITS, ""]
    lines += ["## Data", ""]
    lines.append(f"- data: `{facts.get('data', 'unknown')}`")
    lines.append(f"- data manifest hash: `{facts.get('data_manifest_hash', 'unknown')}`")
    lines.append(f"- regions: {', '.join(data.get('regions', []))}")
    lines += [f"- {line}" for line in _centres(facts.get("centres"))]
    lines += ["", "## Geometry contract and intensities", ""]
    lines.append(f"- orientation: {data.get('orientation')}")
    for region, spacing in sorted((data.get("spacing") or {}).items()):
        lines.append(f"- {region} voxel spacing (mm): {spacing}")
    lines.append(f"- CT HU range (clipped): {data.get('hu_range')}")
    lines.append(f"- slice canvas: {data.get('image_size')} px, 2.5D context "
                 f"{data.get('context_slices')} slices each side")  # fmt: skip
    lines += ["", "## Validation metrics", ""]
    for key, value in sorted(metrics.items()):
        if isinstance(value, int | float):
            lines.append(f"- {key} = {value:.6g}: {DEFINITIONS.get(key, 'see docs/evaluation.md')}")
    pretrained = facts.get("pretrained_features")
    features = {True: "pretrained", False: "seeded random (not comparable to published FID)"}
    shown = features.get(pretrained, "unknown")
    lines.append(f"- perceptual features (FID, perceptual loss): {shown}")
    lines += ["", "## Provenance", ""]
    for key in ("trial_id", "search", "checkpoint"):
        if facts.get(key):
            lines.append(f"- {key}: `{facts[key]}`")
    return "\n".join(lines) + "\n"


def _centres(counts: dict[str, Any] | None) -> list[str]:
    if not counts:
        return ["centres: unknown"]
    out = []
    for split, regions in sorted(counts.items()):
        for region, centres in sorted(regions.items()):
            parts = [f"{c} ({v.get('cases', 0)} cases)" for c, v in sorted(centres.items())]
            out.append(f"{split} {region}: {', '.join(parts)}")
    return out
