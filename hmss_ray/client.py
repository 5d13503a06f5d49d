"""``hmss-ray request`` (``python -m hmss_ray.client``): send an MR volume to the Serve
endpoint, save the sCT."""

from __future__ import annotations

import argparse
import os
import sys

from hmss_ray import cli

EXAMPLES = """examples:
  hmss-ray request -i mr.nii.gz -o sct.nii.gz --url http://127.0.0.1:8000
  hmss-ray request -i mr.mha -o sct.mha --region TH    # a model of several regions
  hmss-ray request -i dicom/MR_T1/ -o sct_dicom/       # a DICOM series in and out
  hmss-ray request -i mr.nii.gz -o sct.zip --patient-id 12345 --patient-name 'Doe^Jane'
  hmss-ray request -i mr.nii.gz -o sct.nii.gz --url https://sct.example.org

Plain http:// is refused for any host but this machine (the MR and the token would cross the
network in clear) unless --insecure; a private CA's certificate: SSL_CERT_FILE=ca.pem.

The MR: NIfTI, MetaImage, NRRD, or a DICOM series (folder, .zip, .dcm). The answer's format
follows -o: .nii/.nii.gz NIfTI, .mha MetaImage, .nrrd NRRD, a folder or .zip a DICOM CT series.

exit status: 0 saved, 1 the server refused the request (its reason is printed), 2 bad arguments,
3 the server cannot be reached
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "request",
        "Send an MR volume to the hmss-ray HTTP endpoint and save the synthetic CT.",
        EXAMPLES,
    )
    cli.add_input(parser, "MR volume file, DICOM folder or .zip")
    cli.add_alias(parser, "mr", dest="input", new="-i/--input")
    cli.add_output(parser, "sCT file (by suffix), or folder/.zip: a DICOM CT series")
    cli.add_alias(parser, "--out", dest="output", new="-o/--output")
    parser.add_argument("--mask", help="optional body mask on the MR grid")
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
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain http:// to a host other than this machine (a network you trust)",
    )
    cli.add_patient_args(parser)
    return parser


def command(args: argparse.Namespace) -> int:
    import httpx

    from hmss_ray.config import UserError
    from hmss_ray.io import Format, format_to_write
    from hmss_ray.io.dicom_write import PatientFields, check_series_target
    from hmss_ray.serving.client import save_answer, synthesize
    from hmss_ray.serving.tls import require_tls

    require_tls(args.url, args.insecure)
    fmt, patient = format_to_write(args.output), PatientFields(**cli.patient_args(args))
    if patient.given() and fmt is not Format.DICOM:
        raise UserError("--patient-* apply to DICOM output only (-o a folder or a .zip)")
    if fmt is Format.DICOM:
        check_series_target(args.output)
    token = os.environ.get(args.token_env)
    try:
        response = synthesize(
            args.url, args.input, args.mask, token, fmt=fmt, patient=patient, region=args.region
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
    save_answer(response.content, args.output, fmt)
    print(
        f"[hmss] wrote {args.output} (model {response.headers.get('x-model-name')} "
        f"{response.headers.get('x-model-version')}, "
        f"{response.headers.get('x-inference-time-ms')} ms)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.run(command, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
