"""Search results: a :class:`TrialRow` per trial, the MAE/KID Pareto front, CSV/Markdown/PNG.

Every row shows the objective (``score``) and the body-masked, per-patient metrics it is made of.

Takes a Tune ``ResultGrid`` (duck-typed: each result has ``metrics_dataframe`` and ``config``)
but imports no Ray itself.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from hmss_ray import storage
from hmss_ray.cli import markdown_table
from hmss_ray.config import ExperimentConfig
from hmss_ray.metrics.objective import objective_text as metric_objective_text

COLUMNS = ("score", "mae_hu", "psnr", "ssim", "kid", "kid_std", "bone_dice")


@dataclass
class TrialRow:
    """The best reported epoch of one trial (lowest score with a checkpoint)."""

    trial_id: str
    params: dict[str, Any]
    checkpoint_path: str
    score: float
    ssim: float = math.nan
    kid: float = math.nan
    kid_std: float = math.nan
    mae_hu: float = math.nan
    psnr: float = math.nan
    bone_dice: float = math.nan
    epochs: int = 0
    pareto: bool = False
    extra: dict[str, float] = field(default_factory=dict)  # every other numeric metric

    def metrics(self) -> dict[str, float]:
        """The validation metrics of this epoch, for the registry's ``metrics.json``."""
        return {**self.extra, **{c: getattr(self, c) for c in COLUMNS}, "epochs": self.epochs}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def objective_text(cfg: ExperimentConfig) -> str:
    return metric_objective_text(cfg.tune)


def _as_uri(path: str, storage_uri: str) -> str:
    """Tune reports checkpoint paths inside the filesystem; give s3 ones their scheme back."""
    if storage.is_remote(storage_uri) and not storage.is_remote(path):
        return f"s3://{path.lstrip('/')}"
    return path


def _epochs(df: pd.DataFrame) -> int:
    """Epochs the trial trained: ``epochs_done`` (reports need not come every epoch)."""
    for column in ("epochs_done", "training_iteration"):
        if column in df:
            return int(df[column].max())
    return 0


def trial_rows(grid: Any, param_keys: list[str], storage_uri: str) -> list[TrialRow]:
    """Best reported epoch of every trial that reported one, best score first, Pareto marked."""
    rows = []
    for result in grid:
        df = result.metrics_dataframe
        if df is None or df.empty or "score" not in df or "checkpoint_path" not in df:
            continue
        df = df.dropna(subset=["score", "checkpoint_path"])
        if df.empty:
            continue
        best = df.loc[df["score"].idxmin()]
        numeric = {
            str(k): float(v) for k, v in best.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }  # fmt: skip
        rows.append(
            TrialRow(
                trial_id=str(best.get("trial_id", "")),
                params={k: _plain(result.config.get(k)) for k in param_keys},
                checkpoint_path=_as_uri(str(best["checkpoint_path"]), storage_uri),
                epochs=_epochs(df),
                extra={k: v for k, v in numeric.items() if k not in COLUMNS},
                **{c: float(best[c]) for c in COLUMNS if c in best},
            )
        )
    for index in pareto_front(rows):
        rows[index].pareto = True
    return sorted(rows, key=lambda r: r.score)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def pareto_front(rows: list[TrialRow]) -> list[int]:
    """Indices of rows no other row beats on both MAE and KID (both lower)."""
    front = []
    for i, a in enumerate(rows):
        dominated = any(
            b.mae_hu <= a.mae_hu and b.kid <= a.kid and (b.mae_hu < a.mae_hu or b.kid < a.kid)
            for j, b in enumerate(rows)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def to_frame(rows: list[TrialRow]) -> pd.DataFrame:
    records = [
        {"trial_id": r.trial_id, **r.params, **{c: getattr(r, c) for c in COLUMNS},
         "pareto": r.pareto}
        for r in rows
    ]  # fmt: skip
    return pd.DataFrame.from_records(records)


def markdown_rows(rows: list[TrialRow]) -> str:
    """The results as a Markdown table, one trial a row."""
    df = to_frame(rows)
    return markdown_table(df.columns, [[_fmt(v) for v in r] for r in df.itertuples(index=False)])


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def plot_pareto(rows: list[TrialRow]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=100, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter([r.kid for r in rows], [r.mae_hu for r in rows], c="tab:blue", label="trials")
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.kid)
    ax.plot(
        [r.kid for r in front], [r.mae_hu for r in front], "o-", c="tab:red", label="Pareto front"
    )
    for r in rows:
        ax.annotate(r.trial_id[-5:], (r.kid, r.mae_hu), fontsize=7)
    ax.set_xlabel("KID, body-masked (lower is better)")
    ax.set_ylabel("MAE in the body, HU (lower is better)")
    ax.set_title("Search: MAE vs KID per trial")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(rows: list[TrialRow], out_uri: str, cfg: ExperimentConfig) -> str:
    """results.csv, results.md (with the objective) and pareto.png under ``out_uri``, which
    takes its name (or its ``results.md``, on S3) only when complete (``storage.output_dir``)."""
    with storage.output_dir(out_uri, last="results.md") as out:
        (out / "results.csv").write_text(to_frame(rows).to_csv(index=False))
        text = f"# Search results\n\nObjective: `{objective_text(cfg)}`\n\n{markdown_rows(rows)}\n"
        (out / "results.md").write_text(text)
        (out / "pareto.png").write_bytes(plot_pareto(rows))
    return out_uri
