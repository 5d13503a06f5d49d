"""``python -m hmss_ray.client``: send an MR volume to the Serve endpoint, save the sCT."""

from __future__ import annotations

import argparse
import os
import sys

from hmss_ray import cli

EXAMPLES = """examples:
  python -m hmss_ray.client mr.nii.gz -o sct.nii.gz --url http://127.0.0.1:8000
  python -m hmss_ray.client mr.mha -o sct.mha --region TH    # a model of several regions
  python -m hmss_ray.client dicom/MR_T1/ -o sct_dicom/          # a DICOM series in and out
  python -m hmss_ray.client mr.nii.gz -o sct.zip --patient-id 12345 --patient-name 'Doe^Jane'

The MR: NIfTI, MetaImage, NRRD, or a DICOM series (folder, .zip, .dcm). The answer's format
follows -o: .nii/.nii.gz NIfTI, .mha MetaImage, .nrrd NRRD, a folder or .zip a DICOM CT series.

exit status: 0 saved, 1 the server refused the request (its reason is printed), 2 bad arguments,
3 the server cannot be reached
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "hmss_ray.client",
        "Send an MR volume to the hmss-ray HTTP endpoint and save the synthetic CT.",
        EXAMPLES,
    )
    parser.add_argument("mr", help="MR volume file, DICOM folder or .zip")
    parser.add_argument("-o", "--out", required=True, help="sCT file (by suffix), or folder/.zip")
    parser.add_argument("--mask", help="optional body mask on the MR grid")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing -o file (never the input)")  # fmt: skip
    parser.add_argument("--url", default=os.environ.get("HMSS_URL", "http://127.0.0.1:8000"))
    parser.add_argument(
        "--region",
        help="the MR's region (brain, pelvis, HN, TH, AB): needed when the model covers regions "
        "with different geometry contracts",
    )
    parser.add_argument(
        "--token-env",
        default="HMSS_API_TOKEN",
        help="environment variable holding the API token, if the server wants one",
    )
    cli.add_patient_args(parser)
    return parser


def command(args: argparse.Namespace) -> int:
    import httpx

    from hmss_ray.config import UserError
    from hmss_ray.io import Format, format_to_write
    from hmss_ray.io.dicom_write import PatientFields, check_output_target, check_series_target
    from hmss_ray.serving.client import save_answer, synthesize

    fmt, patient = format_to_write(args.out), PatientFields(**cli.patient_args(args))
    if patient.given() and fmt is not Format.DICOM:
        raise UserError("--patient-* apply to DICOM output only (-o a folder or a .zip)")
    check_output_target(args.out, [args.mr, args.mask], args.overwrite)
    if fmt is Format.DICOM:
        check_series_target(args.out)
    token = os.environ.get(args.token_env)
    try:
        response = synthesize(
            args.url, args.mr, args.mask, token, fmt=fmt, patient=patient, region=args.region
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 3
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        print(f"error: HTTP {response.status_code}: {detail}", file=sys.stderr)
        return 1
    save_answer(response.content, args.out, fmt)
    print(
        f"[hmss] wrote {args.out} (model {response.headers.get('x-model-name')} "
        f"{response.headers.get('x-model-version')}, "
        f"{response.headers.get('x-inference-time-ms')} ms)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
