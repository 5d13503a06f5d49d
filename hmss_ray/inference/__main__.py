"""``hmss-ray predict`` (``python -m hmss_ray.inference``): one MR volume in, its synthetic CT
(int16 HU) out."""

from __future__ import annotations

import argparse
import sys
import time

from hmss_ray import cli
from hmss_ray.config import TTA

EXAMPLES = """examples:
  hmss-ray predict --model outputs/demo/registry/demo \\
      -i outputs/demo/phantom/Task1/brain/1BA001/mr.nii.gz -o sct.nii.gz
  hmss-ray predict --model outputs/demo/registry/demo -i mr.mha -o sct.mha
  hmss-ray predict --model outputs/demo/registry/demo -i dicom/MR_T1/ -o sct_dicom/
  hmss-ray predict --model outputs/demo/registry/demo -i mr.nii.gz -o sct.zip \\
      --patient-name 'Doe^Jane' --patient-id 12345 --patient-position HFS

-i: NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr), or a DICOM series
(a folder, a .zip, or one .dcm file). -o: by its suffix .nii, .nii.gz, .mha, .mhd, .nrrd,
.nhdr; a folder (new or empty) or a .zip writes a DICOM CT series. A DICOM MR's patient, study
and frame of reference go into the series; otherwise give the --patient-* fields.

A folder of studies (-i a folder of volume files, DICOM zips or DICOM study folders; or an
s3:// prefix) writes <output>/<study>/ per study (sct, spread.nii.gz with TTA or an ensemble,
qa.png, qa.json, qa.html), summary.json, qa_report.pdf and index.html (open it in a browser:
the QA page, no server needed); a failing study is reported and skipped (--ray: on Ray Data):
  hmss-ray predict --model outputs/demo/registry/demo -i cohort/ -o results/
Of several DICOM series, the only MR volume is taken, or the one --series-uid or
--series-description (a regular expression) names. --ct puts a CT and the sCT - CT difference
into the QA (and its MAE inside the body into qa.json): for a folder of studies, a folder with
each study's CT by the study's name (ct/anna.nii.gz, ct/carl/ ...); for one study, its CT, and
-o is then a result folder as for a batch of one:
  hmss-ray predict --model outputs/demo/registry/demo -i cohort/ --ct cohort_ct/ -o results/

exit status: 0 written, 1 some studies of a batch failed (the others are written), 2 bad
arguments or an input that cannot be read or synthesised
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "predict",
        "Synthesise a CT (int16 HU, on the MR's grid) from an MR volume with a registry entry.",
        EXAMPLES,
    )
    cli.add_model(parser)
    cli.add_input(parser, "MR volume file, DICOM folder or .zip")
    cli.add_alias(parser, "--mr", dest="input", new="-i/--input")
    parser.add_argument("--mask", help="body mask on the MR grid (default: derived from the MR)")
    parser.add_argument(
        "--region",
        help="the region whose geometry contract applies (only needed when the model covers "
        "several regions with different data.spacing)",
    )
    cli.add_output(parser, "sCT file (by suffix), or folder/.zip: DICOM")
    cli.add_alias(parser, "--out", dest="output", new="-o/--output")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    cli.add_patient_args(parser)
    cli.add_config_args(
        parser,
        config=False,
        sets="override an input limit of the model's config, e.g. --set io.max_voxels=500000000",
    )
    parser.add_argument("--tta", choices=[t.value for t in TTA],
                        help="test-time flips (default: the entry's inference.tta)")  # fmt: skip
    parser.add_argument("--series-uid", help="DICOM: the SeriesInstanceUID to synthesise from")
    parser.add_argument(
        "--series-description", help="DICOM: a pattern (regex, any case) of the SeriesDescription"
    )
    parser.add_argument("--format", choices=["nifti", "mha", "nrrd", "dicom"],
                        default="nifti", help="a batch's sCT format (default nifti)")  # fmt: skip
    parser.add_argument("--no-qa", action="store_true", help="a batch without QA figures")
    parser.add_argument(
        "--ct",
        help="a CT for the QA (CT, difference, MAE): one study's CT, or for a folder of "
        "studies a folder of CTs named as the studies",
    )
    parser.add_argument(
        "--dose",
        default="",
        help="with --ct and --target: photon, proton or photon,proton, a plan optimised on the "
        "CT recomputed on the sCT, in the QA (needs the dose extra; docs/dose.md)",
    )
    parser.add_argument(
        "--target",
        help="the dose check's target mask: one study's, or for a folder of studies a folder "
        "of masks named as the studies",
    )
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (off anyway off a terminal)")  # fmt: skip
    parser.add_argument("--ray", action="store_true",
                        help="a batch on Ray Data: an actor pool sized to the GPUs or CPUs "
                        "(RAY_ADDRESS: a cluster's; else a local Ray)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (never the input), "
                        "or a batch's study folders that exist")  # fmt: skip
    return parser


def command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hmss_ray import storage
    from hmss_ray.inference.batch import is_batch

    if storage.is_remote(args.input) or is_batch(Path(args.input)):
        return batch_command(args)
    if args.ct or args.dose or args.target:  # one study with its CT: a result folder
        from hmss_ray.config import UserError
        from hmss_ray.io.formats import SUFFIXES

        if args.output.lower().endswith(tuple(SUFFIXES)):
            raise UserError(f"with --ct, -o is a folder for the study's results, not {args.output}")
        return batch_command(args)
    return volume_command(args)


def _series_rule(args: argparse.Namespace):
    from hmss_ray.io.dicom_select import SeriesRule

    if args.series_uid is None and args.series_description is None:
        return None
    return SeriesRule(series_uid=args.series_uid, description=args.series_description)


def _dose(args: argparse.Namespace) -> tuple[str, ...]:
    """``--dose``'s modalities, checked before any study is read (the engine installed too)."""
    from hmss_ray.config import UserError

    if not args.dose:
        if args.target:
            raise UserError("--target is the dose check's: give --dose photon[,proton] too")
        return ()
    from hmss_ray.dose import parse_modalities
    from hmss_ray.dose.engine import require_engine

    if not (args.ct and args.target):
        raise UserError("--dose plans on the CT: give --ct and --target too")
    modalities = tuple(str(m) for m in parse_modalities(args.dose))
    require_engine()
    return modalities


def batch_command(args: argparse.Namespace) -> int:
    from hmss_ray.inference import batch

    with batch.local_folders(args.input, args.output) as (local_in, local_out):
        return _batch(args, local_in, local_out)


def _batch(args: argparse.Namespace, source, output) -> int:
    from pathlib import Path

    from hmss_ray.inference import batch
    from hmss_ray.inference.progress import Bars
    from hmss_ray.inference.synthesizer import Synthesizer
    from hmss_ray.io import Format

    dose = _dose(args)
    studies = batch.find_studies(
        source, Path(args.ct) if args.ct else None, Path(args.target) if args.target else None
    )
    options = batch.BatchOptions(
        format=Format(args.format), region=args.region, series=_series_rule(args),
        qa=not args.no_qa, overwrite=args.overwrite, dose=dose,
    )  # fmt: skip
    if args.ray:
        from hmss_ray.inference.ray_batch import predict_batch_ray

        results, stats = predict_batch_ray(
            args.model, studies, output, options, args.device, args.tta
        )
        print(f"[hmss] Ray Data: {stats['studies_per_min']:.1f} studies/min "
              f"({int(stats['actors'])} actor(s), {stats['seconds']:.1f} s)")  # fmt: skip
    else:
        synth = Synthesizer.from_uri(args.model, device=args.device, tta=args.tta)
        with Bars(len(studies), enabled=False if args.no_progress else None) as bars:
            results = batch.predict_batch(synth, studies, output, options, bars)
    print(batch.summary_table(results))
    return 0 if all(r.status == "ok" for r in results) else 1


def volume_command(args: argparse.Namespace) -> int:
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

    out_format, patient = format_to_write(args.output), PatientFields(**cli.patient_args(args))
    if patient.given() and out_format is not Format.DICOM:
        raise UserError("--patient-* apply to DICOM output only (-o a folder or a .zip)")
    check_output_target(args.output, [args.input, args.mask], args.overwrite)
    if out_format is Format.DICOM:
        check_series_target(args.output)
    format_to_read(args.input)  # a missing or unrecognised input fails before the model loads
    overrides = parse_overrides(args.set)
    if any(not key.startswith("io.") for key in overrides):
        raise UserError("--set takes io.* keys only here (the model's own config is used)")
    synth = Synthesizer.from_uri(args.model, device=args.device, tta=args.tta)
    synth.cfg = synth.cfg.replace(overrides)
    mr = read_volume(args.input, synth.cfg.io, _series_rule(args))
    if "series_choice" in mr.meta:
        print(f"[hmss] {mr.meta['series_choice']}")
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
    write_volume(sct, args.output, series=series)
    print(
        f"[hmss] wrote {args.output} ({out_format}, {sct.shape}) in "
        f"{time.perf_counter() - t0:.1f} s (model {synth.info.name} {synth.info.version}, "
        f"{synth.info.inference})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
