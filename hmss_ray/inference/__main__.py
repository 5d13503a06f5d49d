"""``python -m hmss_ray.inference``: one MR volume in, its synthetic CT (int16 HU) out."""

from __future__ import annotations

import argparse
import sys
import time

from hmss_ray import cli
from hmss_ray.config import TTA

EXAMPLES = """examples:
  python -m hmss_ray.inference --model outputs/registry/demo \\
      --mr data/phantom/Task1/brain/1BA001/mr.nii.gz --out sct.nii.gz
  python -m hmss_ray.inference --model outputs/registry/demo --mr mr.mha --out sct.mha
  python -m hmss_ray.inference --model outputs/registry/demo --mr dicom/MR_T1/ --out sct_dicom/
  python -m hmss_ray.inference --model outputs/registry/demo --mr mr.nii.gz --out sct.zip \\
      --patient-name 'Doe^Jane' --patient-id 12345 --patient-position HFS

--mr: NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr), or a DICOM series
(a folder, a .zip, or one .dcm file). --out: by its suffix .nii, .nii.gz, .mha, .mhd, .nrrd,
.nhdr; a folder (new or empty) or a .zip writes a DICOM CT series. A DICOM MR's patient, study
and frame of reference go into the series; otherwise give the --patient-* fields.

exit status: 0 written, 2 bad arguments or an input that cannot be read or synthesised
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "hmss_ray.inference",
        "Synthesise a CT (int16 HU, on the MR's grid) from an MR volume with a registry entry.",
        EXAMPLES,
    )
    parser.add_argument("--model", required=True, help="registry entry or checkpoint (path, s3://)")
    parser.add_argument("--mr", required=True, help="MR volume file, DICOM folder or .zip")
    parser.add_argument("--mask", help="body mask on the MR grid (default: derived from the MR)")
    parser.add_argument(
        "--region",
        help="the region whose geometry contract applies (only needed when the model covers "
        "several regions with different data.spacing)",
    )
    parser.add_argument("--out", required=True, help="sCT file (by suffix), or folder/.zip: DICOM")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out file (never the input)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    cli.add_patient_args(parser)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="io.KEY=VALUE",
        help="override an input limit of the model's config, e.g. --set io.max_voxels=500000000",
    )
    parser.add_argument("--tta", choices=[t.value for t in TTA],
                        help="test-time flips (default: the entry's inference.tta)")  # fmt: skip
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray.config import UserError, parse_overrides
    from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
    from hmss_ray.io import Format, format_to_read, format_to_write, read_volume, write_volume
    from hmss_ray.io.align import align_to
    from hmss_ray.io.dicom_write import (
        PatientFields,
        SeriesInfo,
        check_output_target,
        check_series_target,
    )

    out_format, patient = format_to_write(args.out), PatientFields(**cli.patient_args(args))
    if patient.given() and out_format is not Format.DICOM:
        raise UserError("--patient-* apply to DICOM output only (--out a folder or a .zip)")
    check_output_target(args.out, [args.mr, args.mask], args.overwrite)
    if out_format is Format.DICOM:
        check_series_target(args.out)
    format_to_read(args.mr)  # a missing or unrecognised input fails before the model loads
    overrides = parse_overrides(args.set)
    if any(not key.startswith("io.") for key in overrides):
        raise UserError("--set takes io.* keys only here (the model's own config is used)")
    synth = Synthesizer.from_uri(args.model, device=args.device, tta=args.tta)
    synth.cfg = synth.cfg.replace(overrides)
    mr = read_volume(args.mr, synth.cfg.io)
    if patient.given() and "dicom" in mr.meta:
        raise UserError("the MR is DICOM: its patient fields are kept, drop --patient-*")
    mask = read_volume(args.mask, synth.cfg.io) if args.mask else None
    if mask is not None:
        try:
            mask = align_to(mask, mr.affine, mr.shape)
        except UserError as exc:
            raise UserError(f"{args.mask}: the mask is not on the MR grid: {exc}") from None
    t0 = time.perf_counter()
    sct = synthesize_volume(synth, mr, mask, region=args.region)
    series = SeriesInfo(
        model=synth.info.name,
        version=synth.info.version,
        patient=patient,
        source=mr.meta.get("dicom"),
        uid_root=synth.cfg.io.uid_root,
    )
    write_volume(sct, args.out, series=series)
    print(
        f"[hmss] wrote {args.out} ({out_format}, {sct.shape}) in "
        f"{time.perf_counter() - t0:.1f} s (model {synth.info.name} {synth.info.version}, "
        f"{synth.info.inference})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
