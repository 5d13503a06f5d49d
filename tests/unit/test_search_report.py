from hmss_ray.config import ExperimentConfig
from hmss_ray.tune.report import TrialRow, markdown_rows, pareto_front, write_report


def _row(tid, mae, kid, score):
    return TrialRow(
        trial_id=tid, params={"loss.lambda_l1": 5.0}, checkpoint_path=f"/runs/{tid}",
        score=score, ssim=0.9, kid=kid, kid_std=0.01, mae_hu=mae, psnr=25.0, bone_dice=0.5,
    )  # fmt: skip


def test_pareto_front_keeps_only_non_dominated_trials():
    rows = [
        _row("a", 80, 0.05, 1),
        _row("b", 90, 0.04, 1),
        _row("c", 95, 0.06, 1),
        _row("d", 80, 0.05, 1),
    ]
    # c is beaten by a on both axes; a and d tie, neither dominates the other
    assert pareto_front(rows) == [0, 1, 3]


def test_report_shows_per_trial_the_objective_and_the_masked_metrics(tmp_path):
    rows = [_row("t1", 80, 0.05, 0.6), _row("t2", 90, 0.04, 0.6)]
    rows[0].pareto = rows[1].pareto = True
    write_report(rows, str(tmp_path), ExperimentConfig())
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[0].startswith("trial_id,loss.lambda_l1,score,mae_hu,psnr,ssim,kid,kid_std,bone_dice")
    assert len(csv) == 3
    md = (tmp_path / "results.md").read_text()
    assert "score = 1 * MAE / 100 HU + 1 * (1 - SSIM) + 0.1 * KID / 0.1" in md and "| t2 |" in md
    mae_only = ExperimentConfig().replace({"tune.metric": "mae_hu"})
    write_report(rows, str(tmp_path), mae_only)
    assert "score = MAE (HU, body" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown_rows(rows).count("\n") == 3
