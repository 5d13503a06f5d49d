"""``hmss-ray evaluate`` (``python -m hmss_ray.evaluate``): per-patient SynthRAD metrics, tables
and figures of a split.

The metrics are those of the data's release, found from its layout: SynthRAD2023 (MAE, PSNR,
SSIM) or SynthRAD2025 (MAE, PSNR, MS-SSIM, Dice, HD95).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hmss_ray import cli
from hmss_ray.config import SegmentationMethod

SPLITS = ("train", "val", "test")
EXIT_OK, EXIT_NOTHING = 0, 3
EXAMPLES = """examples:
  hmss-ray evaluate --model outputs/demo/registry/demo --data outputs/demo/phantom \\
      --shards outputs/demo/shards --split test -o outputs/evaluation
  hmss-ray evaluate --model outputs/demo/registry/demo --data outputs/demo/phantom \\
      --shards outputs/demo/shards --dose photon,proton -o outputs/evaluation-dose
  hmss-ray evaluate --data /data/SynthRAD2025/Task1 --predictions sct/ \\
      --config thorax --segmentation thresholds -o outputs/eval-thorax

exit status: 0 report written (cases left out are listed in it), 2 bad arguments or config,
3 no case could be evaluated
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "evaluate",
        "SynthRAD2023/2025 metrics, slice metrics, tables and figures for one split.",
        EXAMPLES,
    )
    cli.add_model(parser, required=False)
    cli.add_data(parser, "SynthRAD Task1 folder (or its parent)")
    cli.add_shards(parser, "shard root whose manifest gives each case's split", required=False)
    parser.add_argument("--split", default="test", choices=SPLITS,
                        help="manifest split to score (default test; needs --shards)")  # fmt: skip
    parser.add_argument(
        "--predictions",
        help="local folder of sCTs to score: <case_id>.nii.gz (.nii, .mha, .nrrd, or a DICOM "
        "series as <case_id>.zip or folder <case_id>/)",
    )
    parser.add_argument("--segmentation", default="auto", choices=list(SegmentationMethod),
                        help="SynthRAD2025 Dice/HD95 segmentations: auto (TotalSegmentator when "
                        "installed with its weights, else HU thresholds), totalsegmentator or "
                        "thresholds (default auto)")  # fmt: skip
    parser.add_argument(
        "--dose",
        default="",
        help="photon, proton or photon,proton: per patient, a plan optimised on the CT "
        "recomputed on the sCT (needs the dose extra; docs/dose.md)",
    )
    cli.add_output(parser, "report folder (path, s3://)", default="outputs/evaluation")
    cli.add_alias(parser, "--out", dest="output", new="-o/--output")
    cli.add_config_args(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray import storage
    from hmss_ray.evaluate.run import (
        EvaluationJob,
        NothingEvaluated,
        check_output,
        evaluate,
        evaluation_config,
    )
    from hmss_ray.resources import config_path

    if not args.model and not args.predictions:
        raise cli.UserError("give --model (to synthesise the sCTs) or --predictions (to score)")
    from hmss_ray.dose import parse_modalities

    dose = tuple(parse_modalities(args.dose)) if args.dose else ()
    config = config_path(args.config)
    cfg = evaluation_config(args.model, str(config) if config else None, args.set)
    remote = storage.is_remote(args.output)
    check_output(args.output, args.predictions)
    # the whole report is written aside and takes its name when complete (storage.output_dir)
    try:
        with storage.output_dir(args.output, last="report.md") as out:
            job = EvaluationJob(
                data=args.data, out=out, split=args.split, model=args.model, shards=args.shards,
                predictions=args.predictions, device=args.device,
                segmentation=args.segmentation, dose=dose, final=str(args.output),
            )  # fmt: skip
            evaluate(job, cfg)
    except NothingEvaluated as exc:  # raised inside: the previous report stays as it was
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOTHING
    where = args.output if remote else Path(args.output).resolve()
    print(f"[hmss] report: {storage.join(str(where), 'report.md')}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
