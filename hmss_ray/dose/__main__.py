"""``python -m hmss_ray.dose`` (``hmss-ray dose``): plan on the CT, recompute on the sCT, compare.

A research check (pyRadPlan pencil beams, pymedphys gamma), not a commissioned clinical dose
calculation: docs/dose.md says what each number means.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hmss_ray import cli

EXAMPLES = """examples:
  python -m hmss_ray.dose --ct ct.nii.gz --sct sct.nii.gz --target ptv.nii.gz \\
      --oar brainstem=brainstem.nii.gz --oar eyes=eyes.mha --json dose.json
  python -m hmss_ray.dose --ct ct/ --sct sct.nii.gz --rtstruct RS.dcm --target PTV \\
      --oar Rectum=Rectum --modalities proton

exit status: 0 checked, 2 bad arguments or inputs
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "dose",
        "Dose check: a plan optimised on the CT, recomputed on the sCT; DVH differences, gamma "
        "pass rates and the proton range shift.",
        EXAMPLES,
    )
    parser.add_argument("--ct", required=True, help="planning CT (NIfTI, MetaImage, NRRD, DICOM)")
    parser.add_argument("--sct", required=True, help="synthetic CT on the CT's grid")
    parser.add_argument(
        "--target", required=True, help="target mask file (or its ROI name with --rtstruct)"
    )
    parser.add_argument("--oar", action="append", default=[], metavar="NAME=MASK",
                        help="organ at risk, repeatable: a mask file, or an ROI name with "
                        "--rtstruct")  # fmt: skip
    parser.add_argument("--body", help="body mask (default: the CT's largest region > -300 HU)")
    parser.add_argument("--rtstruct", help="DICOM RTSTRUCT holding the target and organs")
    parser.add_argument("--modalities", default="photon,proton",
                        help="photon, proton or both (default photon,proton)")  # fmt: skip
    parser.add_argument("--grid-mm", type=float, default=4.0,
                        help="dose grid voxel size in mm (default 4)")  # fmt: skip
    parser.add_argument("--json", help="write the differences as JSON to this path")
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray.dose.check import check_case, parse_modalities
    from hmss_ray.dose.engine import Structures, require_engine
    from hmss_ray.dose.report import summary_table
    from hmss_ray.dose.structures import body_from_ct, parse_named, read_mask, rtstruct_masks
    from hmss_ray.io import read_volume
    from hmss_ray.io.align import align_to

    modalities = parse_modalities(args.modalities)
    require_engine()
    oars = parse_named(args.oar)
    ct = read_volume(args.ct)
    sct = align_to(read_volume(args.sct), ct.affine, ct.shape, tolerance_mm=0.5)
    if args.rtstruct:
        found = rtstruct_masks(args.rtstruct, ct, [args.target, *oars.values()])
        target, organs = found[args.target], {n: found[roi] for n, roi in oars.items()}
    else:
        target = read_mask(args.target, ct, "target")
        organs = {n: read_mask(p, ct, f"--oar {n}") for n, p in oars.items()}
    body = read_mask(args.body, ct, "body") if args.body else body_from_ct(ct.array)
    structures = Structures(body=body, target=target & body, oars=organs)
    check = check_case(ct.array, sct.array, structures, ct.affine, modalities, args.grid_mm)
    print(summary_table(check))
    if args.json:
        Path(args.json).write_text(json.dumps({m: r for m, r in check.rows.items()}, indent=2))
        print(f"[hmss] wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
