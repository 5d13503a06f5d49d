"""Batch prediction: a folder of studies in, one folder of planning-ready results per study out.

What a study is: :mod:`hmss_ray.inference.studies` (:func:`find_studies`).

Each study gets ``<output>/<study>/`` with ``sct.<ext>`` (or ``sct/``, a DICOM series), with
TTA or an ensemble ``spread.<ext>`` (the passes' standard deviation in HU; ``spread.dcm``, a
Parametric Map, beside a DICOM series), ``qa.png``, ``qa.json`` and ``qa.html`` (the browser QA
page, :mod:`hmss_ray.qa.web`), with the CT and the difference when a CT is given
(:func:`find_studies`' ``ct``; :mod:`.study_files`); the batch gets
``summary.json``, ``qa_report.pdf``, ``index.html`` and ``qa-viewer/`` (the page's NiiVue).
A study folder is written under a temporary name and renamed when complete, so a planning
system's import never sees half a study; a study that fails is reported, leaves nothing
behind, and the rest go on. The model is loaded once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hmss_ray import storage
from hmss_ray.config import UserError
from hmss_ray.inference.studies import Study, find_studies, is_batch
from hmss_ray.inference.study_files import read_ct, write_dose, write_qa, write_volumes
from hmss_ray.inference.synthesizer import Synthesizer, synthesize_with_spread
from hmss_ray.io import Format, format_to_read, read_volume
from hmss_ray.io.dicom_select import SeriesRule
from hmss_ray.io.dicom_write import SeriesInfo
from hmss_ray.qa import figure, web

__all__ = ["BatchOptions", "Study", "StudyResult", "find_studies", "is_batch", "predict_batch"]


class Progress(Protocol):
    """What a batch tells its caller as it goes (the command draws bars; the library is quiet)."""

    def study(self, name: str) -> None:
        """A study starts."""

    def slices(self, done: int, total: int) -> None:
        """Slices of the current study through the model so far (monotone, ends at total)."""

    def finished(self) -> None:
        """The current study is written or has failed."""


@dataclass
class StudyResult:
    study: str
    status: str  # "ok" or "failed"
    seconds: float
    series: str = ""  # what was read: the DICOM series chosen and why, or the file's format
    error: str = ""
    outputs: list[str] = field(default_factory=list)
    qa: dict[str, Any] = field(default_factory=dict)
    ct: str = ""  # the CT the QA compared with (--ct), if any


@dataclass(frozen=True)
class BatchOptions:
    format: Format = Format.NIFTI
    region: str | None = None
    series: SeriesRule | None = None
    qa: bool = True
    overwrite: bool = False
    dose: tuple[str, ...] = ()  # "photon", "proton": a dose check where a CT and target are given

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "format": str(self.format)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchOptions:
        series = data.get("series")
        return cls(**{**data, "format": Format(data["format"]), "dose": tuple(data.get("dose", ())),
                      "series": SeriesRule(**series) if series else None})  # fmt: skip


@contextmanager
def local_folders(input_uri: str, output_uri: str) -> Iterator[tuple[Path, Path]]:
    """Local folders for an input and an output that may be object storage (``s3://``).

    A remote input is copied into a private temporary folder (0700) first; a remote output is
    written there and uploaded when the batch is done (``summary.json`` last). The copies are
    removed whatever happens, so no study stays on this machine's disk.
    """
    if not (storage.is_remote(input_uri) or storage.is_remote(output_uri)):
        yield Path(input_uri), Path(output_uri)
        return
    tmp = Path(tempfile.mkdtemp(prefix="hmss-predict-"))  # mode 0700
    try:
        local_in, local_out = Path(input_uri), Path(output_uri)
        if storage.is_remote(input_uri):
            if not storage.listdir(input_uri):
                raise UserError(f"{input_uri}: nothing there")
            local_in = tmp / "in"
            storage.copy_dir(input_uri, str(local_in))
        if storage.is_remote(output_uri):
            local_out = tmp / "out"
        yield local_in, local_out
        if storage.is_remote(output_uri):
            summary = local_out / "summary.json"
            held = summary.read_bytes() if summary.exists() else None
            summary.unlink(missing_ok=True)
            storage.copy_dir(str(local_out), output_uri)
            if held is not None:  # last: its presence says the batch is complete
                storage.write_bytes(storage.join(output_uri, "summary.json"), held)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def predict_batch(
    synth: Synthesizer,
    studies: list[Study],
    output: Path,
    options: BatchOptions,
    progress: Progress | None = None,
) -> list[StudyResult]:
    """Every study through ``synth``; a failing one is recorded and skipped."""
    output.mkdir(parents=True, exist_ok=True)
    results = []
    for study in studies:
        if progress is not None:
            progress.study(study.name)
        results.append(predict_study(synth, study, output, options, progress))
        if progress is not None:
            progress.finished()
    finish_batch(results, output, options, synth.info.to_dict())
    return results


def finish_batch(
    results: list[StudyResult], output: Path, options: BatchOptions, model: dict[str, Any]
) -> None:
    """The batch's own files: the QA PDF (a page per study written), ``summary.json``, and
    the QA page's ``index.html`` and ``qa-viewer/``."""
    pages = ("qa.png", "dose.png")  # a study's dose page follows its QA page
    pngs = [output / r.study / name for r in results if r.status == "ok" and options.qa
            for name in pages if (output / r.study / name).is_file()]  # fmt: skip
    if pngs:
        figure.write_pdf(pngs, output / "qa_report.pdf")
    summary = {"model": model, "studies": [asdict(r) for r in results]}
    (output / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if options.qa:  # the QA page, openable without a server: index.html -> <study>/qa.html
        web.write_viewer(output, summary["studies"])


def predict_study(
    synth: Synthesizer,
    study: Study,
    output: Path,
    options: BatchOptions,
    progress: Progress | None = None,
) -> StudyResult:
    target = output / study.name
    start = time.perf_counter()
    if target.exists() and not options.overwrite:
        return StudyResult(study.name, "failed", 0.0, error=f"{target} exists (--overwrite)")
    staging = Path(tempfile.mkdtemp(prefix=f".{study.name}.partial-", dir=output))
    try:
        result = _predict_into(synth, study, staging, options, progress)
        if target.exists():  # --overwrite: the old result goes only once the new one is whole
            shutil.rmtree(target)
        staging.rename(target)
    except UserError as exc:  # bad input: reported, the batch goes on
        shutil.rmtree(staging, ignore_errors=True)
        return StudyResult(study.name, "failed", time.perf_counter() - start, error=str(exc))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.seconds = time.perf_counter() - start
    result.outputs = [str(target / name) for name in result.outputs]
    return result


def _predict_into(
    synth: Synthesizer, study: Study, folder: Path, options: BatchOptions, progress
) -> StudyResult:
    mr = read_volume(study.path, synth.cfg.io, options.series)
    ct = read_ct(study.ct, mr, synth.cfg.io)  # before the model runs: a bad CT fails fast
    slices = None if progress is None else progress.slices
    sct, spread, body = synthesize_with_spread(synth, mr, region=options.region, progress=slices)
    series = mr.meta.get("series_choice") or str(format_to_read(study.path))
    info = SeriesInfo(
        model=synth.info.name, version=synth.info.version, source=mr.meta.get("dicom"),
        uid_root=synth.cfg.io.uid_root,
    )  # fmt: skip
    outputs = write_volumes(sct, spread, mr, folder, options.format, info)
    arrays = {"sct": sct.array, "body": body, "spread": None if spread is None else spread.array,
              "ct": ct}  # fmt: skip
    low, high = synth.cfg.data.hu_range
    qa, written = write_qa(
        folder, study.name, arrays, mr, (low, high), _caption(synth), series, options.qa
    )
    if options.dose and ct is not None and study.target is not None:
        qa["dose"], drawn = write_dose(
            folder, study.name, ct, sct, study.target, options.dose, synth.cfg.io
        )
        written += drawn
    return StudyResult(study.name, "ok", 0.0, series=series, outputs=outputs + written, qa=qa,
                       ct=str(study.ct or ""))  # fmt: skip


def _caption(synth: Synthesizer) -> str:
    info = synth.info
    return f"model {info.name} {info.version} ({info.inference})\nresearch use, not for diagnosis"


def summary_table(results: list[StudyResult]) -> str:
    """The end-of-batch table: study, status, seconds, series chosen (or the error)."""
    width = max([len(r.study) for r in results] + [5])
    lines = [f"{'study':<{width}}  status  seconds  series / error"]
    for r in results:
        what = r.error if r.status != "ok" else r.series
        flagged = f"  [{len(r.qa.get('flags', []))} QA flag(s)]" if r.qa.get("flags") else ""
        lines.append(f"{r.study:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {what}{flagged}")
    done = sum(r.status == "ok" for r in results)
    lines.append(f"{done} of {len(results)} studies written")
    return "\n".join(lines)
