from hmss_ray.config import ExperimentConfig
from hmss_ray.tune.report import TrialRow, markdown_rows, pareto_front, write_report


def _row(tid, ssim, fid, score):
    return TrialRow(
        trial_id=tid, params={"loss.lambda_l1": 5.0}, checkpoint_path=f"/runs/{tid}",
        score=score, ssim=ssim, fid=fid, mae_hu=80.0, psnr=25.0, bone_dice=0.5,
    )  # fmt: skip


def test_pareto_front_keeps_only_non_dominated_trials():
    rows = [
        _row("a", 0.9, 50, 1),
        _row("b", 0.8, 40, 1),
        _row("c", 0.7, 60, 1),
        _row("d", 0.9, 50, 1),
    ]
    # c is beaten by a on both axes; a and d tie, neither dominates the other
    assert pareto_front(rows) == [0, 1, 3]


def test_report_files_hold_every_trial(tmp_path):
    rows = [_row("t1", 0.9, 50, 0.6), _row("t2", 0.8, 40, 0.6)]
    rows[0].pareto = rows[1].pareto = True
    write_report(rows, str(tmp_path), ExperimentConfig())
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[0].startswith("trial_id,loss.lambda_l1,ssim,fid,mae_hu,psnr,bone_dice,score")
    assert len(csv) == 3
    md = (tmp_path / "results.md").read_text()
    assert "score = 1 * (1 - SSIM) + 1 * FID / 100" in md and "| t2 |" in md
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown_rows(rows).count("\n") == 3
