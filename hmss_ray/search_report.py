"""Search results: one row per trial, the Pareto front of SSIM vs FID, CSV / Markdown / PNG.

Takes a Tune ``ResultGrid`` (duck-typed: each result has ``metrics_dataframe``, ``config``,
``path``) but imports no Ray itself.
"""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd

from hmss_ray import storage
from hmss_ray.config import ExperimentConfig

COLUMNS = ("ssim", "fid", "mae_hu", "psnr", "bone_dice", "score")


def objective_text(cfg: ExperimentConfig) -> str:
    t = cfg.tune
    return f"score = {t.w_ssim:g} * (1 - SSIM) + {t.w_fid:g} * FID / {t.fid_ref:g} (minimised)"


def _as_uri(path: str, storage_uri: str) -> str:
    """Tune reports checkpoint paths inside the filesystem; give s3 ones their scheme back."""
    if storage.is_remote(storage_uri) and not storage.is_remote(path):
        return f"s3://{path.lstrip('/')}"
    return path


def trial_rows(grid: Any, param_keys: list[str], storage_uri: str) -> list[dict[str, Any]]:
    """Best reported epoch (lowest score with a checkpoint) of every trial that reported one."""
    rows = []
    for result in grid:
        df = result.metrics_dataframe
        if df is None or df.empty or "score" not in df or "checkpoint_path" not in df:
            continue
        df = df.dropna(subset=["score", "checkpoint_path"])
        if df.empty:
            continue
        best = df.loc[df["score"].idxmin()]
        row: dict[str, Any] = {
            "trial_id": str(best.get("trial_id", "")),
            "params": {k: _plain(result.config.get(k)) for k in param_keys},
            "epochs": int(df["training_iteration"].max()) if "training_iteration" in df else 0,
            "checkpoint_path": _as_uri(str(best["checkpoint_path"]), storage_uri),
        }
        row.update({c: float(best[c]) for c in COLUMNS if c in best})
        rows.append(row)
    for index in pareto_front(rows):
        rows[index]["pareto"] = True
    return sorted(rows, key=lambda r: r["score"])


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def pareto_front(rows: list[dict[str, Any]]) -> list[int]:
    """Indices of rows no other row beats on both SSIM (higher) and FID (lower)."""
    front = []
    for i, a in enumerate(rows):
        dominated = any(
            b["ssim"] >= a["ssim"]
            and b["fid"] <= a["fid"]
            and (b["ssim"] > a["ssim"] or b["fid"] < a["fid"])
            for j, b in enumerate(rows)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    records = []
    for row in rows:
        record = {"trial_id": row["trial_id"], **row["params"]}
        record.update({c: row.get(c, math.nan) for c in COLUMNS})
        record["pareto"] = bool(row.get("pareto"))
        records.append(record)
    return pd.DataFrame.from_records(records)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    df = to_frame(rows)
    header = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = [
        "| " + " | ".join(_fmt(v) for v in record) + " |" for record in df.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_pareto(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    ax.scatter([r["fid"] for r in rows], [r["ssim"] for r in rows], c="tab:blue", label="trials")
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["fid"])
    ax.plot(
        [r["fid"] for r in front],
        [r["ssim"] for r in front],
        "o-",
        c="tab:red",
        label="Pareto front",
    )
    for r in rows:
        ax.annotate(r["trial_id"][-5:], (r["fid"], r["ssim"]), fontsize=7)
    ax.set_xlabel("FID (lower is better)")
    ax.set_ylabel("SSIM (higher is better)")
    ax.set_title("Search: SSIM vs FID per trial")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(rows: list[dict[str, Any]], out_uri: str, cfg: ExperimentConfig) -> str:
    """results.csv, results.md (with the objective) and pareto.png under ``out_uri``."""
    storage.write_text(storage.join(out_uri, "results.csv"), to_frame(rows).to_csv(index=False))
    text = f"# Search results\n\nObjective: `{objective_text(cfg)}`\n\n{markdown_table(rows)}\n"
    storage.write_text(storage.join(out_uri, "results.md"), text)
    storage.write_bytes(storage.join(out_uri, "pareto.png"), plot_pareto(rows))
    return out_uri
