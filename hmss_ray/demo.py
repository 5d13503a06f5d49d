"""``hmss-ray demo`` (``make demo``): the whole job end to end on the embedded default (local
Ray, disk, phantoms).

    hmss-ray demo [-o outputs/demo] [--cases 9] [--quick] [--edition 2023|2025]

1. phantom data in the SynthRAD2023 layout (brain, NIfTI), or with ``--edition 2025`` in the
   SynthRAD2025 layout (HN, TH, AB, MetaImage); one deliberately corrupt case: reported, skipped
2. ``hmss_ray.prepare``: validate, split by patient, normalise, slice, write Parquet shards
3. ``hmss_ray.tune``: a tiny Ray Tune + Optuna search, each trial a Ray Train run -> registry
4. Ray Serve: the winner behind HTTP on 127.0.0.1
5. ``hmss_ray.client``: every held-out test MR sent over HTTP, the returned sCT saved
6. ``hmss_ray.evaluate``: the release's metrics of the served sCTs (SynthRAD2023: MAE, PSNR,
   SSIM; SynthRAD2025: MAE, PSNR, MS-SSIM, Dice, HD95), tables and figures
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hmss_ray import cli, storage

if TYPE_CHECKING:
    from hmss_ray.config import DataConfig

QUICK = [
    "train.stage_epochs=[1, 0, 1]",
    "train.steps_per_epoch=3",
    "train.val_max_slices=16",
    "train.batch_size=4",
    "metrics.fid_max_slices=16",
]


@dataclass(frozen=True)
class EditionPlan:
    """What the demo changes for a SynthRAD release: phantom arguments, config, case count."""

    phantom_args: tuple[str, ...]
    overrides: tuple[str, ...]  # on configs/demo.yaml
    cases: int  # default --cases: paired cases per region
    what: str


EDITIONS = {
    "2023": EditionPlan(("--edition", "2023"), (), 12, "brain cases (3 centres)"),
    "2025": EditionPlan(
        ("--edition", "2025"),
        ("data.regions=[HN, TH, AB]", "data.hu_range=[-1024, 3071]"),
        4,
        "cases per region, head-neck, thorax, abdomen (5 centres), MetaImage",
    ),
}


def _step(n: int, text: str) -> float:
    print(f"\n=== [{n}/6] {text}", flush=True)
    return time.perf_counter()


def _done(t0: float) -> None:
    print(f"    ... done in {time.perf_counter() - t0:.0f} s", flush=True)


def _deploy(entry: str, port: int) -> str:
    """Deploy on ``port``, or on a free one; a free port can be taken by another process between
    finding it and binding it, so try a few."""
    from ray import serve

    from hmss_ray.cluster import free_port
    from hmss_ray.serving.app import deploy

    for attempt in range(3):
        try:
            return deploy(entry, port=port or free_port())
        except Exception as exc:  # Serve's proxy failing to bind surfaces as a RayTaskError
            if port or attempt == 2:
                raise
            print(f"    port taken ({exc.__class__.__name__}); trying another", flush=True)
            serve.shutdown()
    raise AssertionError("unreachable")


def upload_file(case: Path, staging: Path, modality: str = "mr") -> Path | None:
    """The case's MR (or mask) as a file the endpoint takes: NIfTI as it is, other formats
    (MetaImage) converted to NIfTI on the same grid first, so the sCT comes back on the case's
    grid. None for a mask the case does not have; an MR is required."""
    from hmss_ray.data.synthrad import CaseId, CaseRef
    from hmss_ray.io import read_volume, write_volume

    path = CaseRef(CaseId.parse(case.name), case).file(modality)
    if path is None:
        if modality == "mr":
            raise FileNotFoundError(f"{case}: no MR file")
        return None
    if path.name.endswith((".nii.gz", ".nii")):
        return path
    staging.mkdir(parents=True, exist_ok=True)
    name = case.name if modality == "mr" else f"{case.name}_{modality}"
    return write_volume(read_volume(path), staging / f"{name}.nii.gz")


def write_phantoms(data: Path, cases: int, plan: EditionPlan, cfg: DataConfig) -> int:
    """Whole patients, each region rendered on its contract grid (brain 4x4x10 mm: 56 x 64 x 24
    voxels), so that a CPU trains on them in minutes and the served sCT comes back without a
    resampling round trip: on a 4x4x9.8 mm phantom the 4x4x8 mm contract's round trip alone
    costs 55 HU of MAE against the phantom's own CT."""
    from hmss_ray import phantom
    from hmss_ray.io.geometry import Contract

    for i, region in enumerate(cfg.regions):
        spacing = Contract.of(cfg, region).spacing
        argv = ["-o", str(data), "--cases", str(cases), *plan.phantom_args, "--quiet",
                "--regions", region, "--spacing", *map(str, spacing),
                "--corrupt", "1" if i == 0 else "0"]  # fmt: skip
        code = phantom.main(argv)
        if code != 0:
            return code
    return 0


def held_out_cases(data_dir: Path, shards: str) -> list[Path]:
    """Folders of the cases the split held out for testing."""
    from hmss_ray.data.manifest import read_manifest
    from hmss_ray.data.synthrad import find_cases

    folders = {str(ref.id): ref.path for ref in find_cases(data_dir)}
    return [folders[case_id] for case_id in read_manifest(shards).case_ids("test")]


def run(args: argparse.Namespace) -> int:
    from hmss_ray import client, prepare, resources
    from hmss_ray.cluster import init_ray
    from hmss_ray.config import load_config
    from hmss_ray.data.synthrad import CaseId
    from hmss_ray.evaluate import __main__ as evaluate
    from hmss_ray.tune.search import run_search
    from hmss_ray.tune.space import load_space

    out = Path(args.output).resolve()
    data = Path(args.data).resolve() if args.data else out / "phantom"
    shards = str(out / "shards")
    config = str(resources.config_path("demo"))
    plan = EDITIONS[args.edition]
    cases = args.cases if args.cases is not None else plan.cases
    overrides = [*plan.overrides, *(QUICK if args.quick else [])]
    # the trials as MLflow runs and the winner as a model version, when MLflow is installed
    mlflow_uri = f"sqlite:///{out}/mlflow.db" if importlib.util.find_spec("mlflow") else None
    tracking = [f"tune.mlflow_uri={mlflow_uri}"] if mlflow_uri else []
    cfg = load_config(config, [*overrides, *tracking])
    t_all = time.perf_counter()

    if args.data:
        t0 = _step(1, f"data: {data} as given (no phantoms written)")
    else:
        t0 = _step(1, f"phantom data: {cases} {plan.what} + 1 corrupt -> {data}")
        code = write_phantoms(data, cases, plan, cfg.data)
        if code != 0:
            return code
    _done(t0)

    t0 = _step(2, f"prepare: validate, split by patient, slice, shard -> {shards}")
    sets = [a for o in plan.overrides for a in ("--set", o)]
    code = prepare.main(["--data", str(data), "-o", shards, "--config", config, *sets])
    if code != 0:  # 0 also when cases were skipped: they are listed above
        return code
    _done(t0)

    t0 = _step(3, "tune: Ray Tune + Optuna, each trial a Ray Train run (local Ray)")
    # a new search every time: Tune would resume an earlier demo's search, trained on the data
    # and recipe of then, and serve its winner
    for stale in (out / "tune" / "demo", out / "registry" / "demo"):
        shutil.rmtree(stale, ignore_errors=True)
    init_ray()
    registry = str(out / "registry")
    result = run_search(
        cfg,
        load_space(resources.space_path("demo")),
        shards,
        str(out / "tune"),
        "demo",
        registry,
        "demo",
    )
    entry = result.registry_entry
    print(f"    search report: {result.report}")
    print(f"    winner {result.winner.trial_id} -> {entry}")
    _done(t0)

    t0 = _step(4, "serve: the winner behind HTTP with Ray Serve on 127.0.0.1")
    import ray
    from ray import serve

    url = _deploy(entry, args.port)
    print(f"    endpoint: {url}/v1/synthesize  (model info: {url}/v1/model)")
    _done(t0)

    t0 = _step(5, "client: held-out test MRs over HTTP -> sCT NIfTI")
    served = out / "served_sct"
    shutil.rmtree(served, ignore_errors=True)  # the demo's own: an earlier run's sCTs go
    served.mkdir(parents=True)
    for case in held_out_cases(data, shards):
        mr = upload_file(case, out / "upload")
        # with the case's body mask, as SynthRAD provides it: the sCT is air outside it, and
        # the metrics are taken inside it
        mask = upload_file(case, out / "upload", "mask")
        region = CaseId.parse(case.name).region  # a 2025 model covers 3 regions, 2 contracts
        argv = ["-i", str(mr), "-o", str(served / f"{case.name}.nii.gz"), "--url", url,
                "--region", region]  # fmt: skip
        code = client.main([*argv, *(["--mask", str(mask)] if mask else [])])
        if code != 0:
            print(f"error: the endpoint failed on {case.name}", file=sys.stderr)
            return code
    serve.shutdown()
    ray.shutdown()
    _done(t0)

    t0 = _step(6, f"evaluate: SynthRAD{args.edition} metrics of the served sCTs, tables, figures")
    report = out / "report"
    code = evaluate.main(
        [
            "--model",
            entry,
            "--data",
            str(data),
            "--shards",
            shards,
            "--split",
            "test",
            "--predictions",
            str(served),
            "-o",
            str(report),
        ]
    )
    _done(t0)
    print(f"\nDemo finished in {(time.perf_counter() - t_all) / 60:.1f} min.")
    print(f"  report:   {report / 'report.md'}")
    print(f"  figures:  {report}/*.png")
    print(f"  search:   {storage.join(str(out / 'tune'), 'demo', 'report', 'results.md')}")
    print(f"  registry: {entry}")
    if mlflow_uri:
        print(f"  MLflow:   mlflow ui --backend-store-uri {mlflow_uri}")
    return code


EXAMPLES = """examples:
  hmss-ray demo -o outputs/demo                    # about 3 min on 2 CPU cores
  hmss-ray demo --edition 2025 -o outputs/demo2025
  hmss-ray demo --quick -o outputs/demo-quick      # a few steps only: checks the install
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "demo",
        "Run the whole job end to end on phantom data (local Ray, local storage).",
        EXAMPLES,
    )
    cli.add_output(parser, "where everything is written", default="outputs/demo")
    cli.add_alias(parser, "--out", dest="output", new="-o/--output")
    parser.add_argument("--edition", default="2023", choices=list(EDITIONS),
                        help="phantoms of SynthRAD2023 (brain, NIfTI; default) or SynthRAD2025 "
                        "(head-neck, thorax, abdomen; MetaImage)")  # fmt: skip
    parser.add_argument("--cases", type=int, default=None,
                        help="phantom cases per region (default 12 brain for 2023, 4 per region "
                        "for 2025)")  # fmt: skip
    cli.add_data(parser, "a SynthRAD folder of this edition to use instead of writing phantoms "
                 "(its Task1 folder or the parent)", required=False)  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    parser.add_argument("--quick", action="store_true", help="a few steps only (used by tests)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run(run, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
