"""``python -m hmss_ray.inference``: one MR volume in, its synthetic CT (int16 HU) out."""

from __future__ import annotations

import argparse
import sys
import time

from hmss_ray import cli
from hmss_ray.config import TTA

EXAMPLES = """example:
  python -m hmss_ray.inference --model outputs/registry/demo \\
      --mr data/phantom/Task1/brain/1BA001/mr.nii.gz --out sct.nii.gz

exit status: 0 written, 2 bad arguments or an input that cannot be synthesised
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "hmss_ray.inference",
        "Synthesise a CT (int16 HU, on the MR's grid) from an MR volume with a registry entry.",
        EXAMPLES,
    )
    parser.add_argument("--model", required=True, help="registry entry or checkpoint (path, s3://)")
    parser.add_argument("--mr", required=True, help="MR volume (.nii or .nii.gz)")
    parser.add_argument("--mask", help="body mask on the MR grid (default: derived from the MR)")
    parser.add_argument(
        "--region",
        help="the region whose geometry contract applies (only needed when the model covers "
        "several regions with different data.spacing)",
    )
    parser.add_argument("--out", required=True, help="where to write the sCT (.nii or .nii.gz)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--tta", choices=[t.value for t in TTA],
                        help="test-time flips (default: the entry's inference.tta)")  # fmt: skip
    return parser


def command(args: argparse.Namespace) -> int:
    from hmss_ray.inference.synthesizer import Synthesizer, synthesize_volume
    from hmss_ray.io import read_volume, write_volume

    mr = read_volume(args.mr)
    mask = read_volume(args.mask) if args.mask else None
    synth = Synthesizer.from_uri(args.model, device=args.device, tta=args.tta)
    t0 = time.perf_counter()
    sct = synthesize_volume(synth, mr, mask, region=args.region)
    write_volume(sct, args.out)
    print(
        f"[hmss] wrote {args.out} {sct.shape} in {time.perf_counter() - t0:.1f} s "
        f"(model {synth.info.name} {synth.info.version}, {synth.info.inference})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
